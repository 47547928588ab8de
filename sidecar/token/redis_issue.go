package token

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Issuer = (*RedisStore)(nil)

// issueScript is Issue in one call. KEYS: the limits' counters, then the
// claim key (when ARGV[2] is "1"), then the epochs hash (when ARGV[3] is
// "1"), then the token key. ARGV: the number of limits, the claim and
// epoch flags, each limit's window (ms), each limit's maximum, the claim's
// owner and TTL (ms), the provider id, the record's JSON and its TTL (ms).
//
// It answers {status, epoch, count...}: status 1 saved, 2 limited (nothing
// claimed or saved), 3 replayed (nothing saved); epoch as a decimal string
// ("0" when none). Every limit is counted, as by Allow. The epoch is
// appended to the record's JSON object (which the caller encodes without
// one, ending in '}'), after checking it is a decimal integer, so a
// corrupt epoch fails the call instead of producing invalid JSON.
var issueScript = redis.NewScript(`
local nl = tonumber(ARGV[1])
local out = {1, '0'}
local limited = false
for i = 1, nl do
  local n = redis.call('INCR', KEYS[i])
  if n == 1 or redis.call('PTTL', KEYS[i]) == -1 then
    redis.call('PEXPIRE', KEYS[i], ARGV[3 + i])
  end
  out[2 + i] = n
  if n > tonumber(ARGV[3 + nl + i]) then limited = true end
end
if limited then
  out[1] = 2
  return out
end
local k = nl + 1
local a = 4 + 2 * nl
if ARGV[2] == '1' then
  if not redis.call('SET', KEYS[k], ARGV[a], 'NX', 'PX', ARGV[a + 1]) then
    if redis.call('GET', KEYS[k]) ~= ARGV[a] then
      out[1] = 3
      return out
    end
  end
  k = k + 1
end
local val = ARGV[a + 3]
if ARGV[3] == '1' then
  local e = redis.call('HGET', KEYS[k], ARGV[a + 2])
  if e and e ~= '0' then
    if not string.match(e, '^[1-9][0-9]*$') or string.len(e) > 18 then
      return redis.error_reply('ERR oidc-sidecar: the revocation epoch of provider ' .. ARGV[a + 2] .. ' is not a positive integer')
    end
    val = string.sub(val, 1, -2) .. ',"epoch":' .. e .. '}'
    out[2] = e
  end
  k = k + 1
end
redis.call('SET', KEYS[k], val, 'PX', ARGV[a + 4])
return out
`)

// epochScript reads one provider's epoch (HGET) as a script, so the
// Cluster path's first pipeline holds only script calls (NOSCRIPT handling
// in evalScripts).
var epochScript = redis.NewScript(`return redis.call('HGET', KEYS[1], ARGV[1])`)

// Issue applies iss. On a single server or a Sentinel-managed primary it is
// one script call (one round trip; with MinReplicasAck, the script and WAIT
// in one pipeline). In a Cluster the keys live in different hash slots,
// so it takes two round trips: the limits, the claim and the epoch in one
// pipeline (one command per key, sent to each node in parallel), then the
// record's SET; a claim won by an exchange that a limit refused is
// released.
func (s *RedisStore) Issue(ctx context.Context, iss Issuance) (IssueResult, error) {
	if err := checkIssuance(iss); err != nil {
		return IssueResult{}, err
	}
	val, err := encodeRecord(iss.Record)
	if err != nil {
		return IssueResult{}, err
	}
	if _, cluster := s.client.(*redis.ClusterClient); cluster {
		if s.ack.n > 0 {
			return s.issueAckedCluster(ctx, iss)
		}
		return s.issueCluster(ctx, iss, val)
	}

	now := s.now()
	nl := len(iss.Limits)
	keys := make([]string, 0, nl+3)
	args := make([]any, 0, 3+2*nl+5)
	args = append(args, nl, boolArg(iss.ClaimKey != ""), boolArg(iss.EpochKey != ""))
	lefts := make([]time.Duration, nl)
	for i, l := range iss.Limits {
		idx, left := window(now, l.Window)
		keys = append(keys, s.prefix+rlKeyPart+l.Key+":"+strconv.FormatInt(idx, 10))
		lefts[i] = left
		args = append(args, l.Window.Milliseconds())
	}
	for _, l := range iss.Limits {
		args = append(args, l.Max)
	}
	if iss.ClaimKey != "" {
		keys = append(keys, s.prefix+onceKeyPart+iss.ClaimKey)
	}
	if iss.EpochKey != "" {
		keys = append(keys, iss.EpochKey)
	}
	tk := s.prefix + tokKeyPart + iss.Hash
	keys = append(keys, tk)
	args = append(args, iss.ClaimOwner, iss.ClaimTTL.Milliseconds(), iss.Record.ProviderID, val, iss.TTL.Milliseconds())

	ctx, cancel := s.writeCtx(ctx)
	defer cancel()
	var reply any
	if s.ack.n == 0 {
		reply, err = issueScript.Run(ctx, s.client, keys, args...).Result()
		if err != nil {
			return IssueResult{}, s.unavailable("EVALSHA (issue)", err)
		}
	} else {
		// EVAL, not EVALSHA: a NOSCRIPT retry would wait for the replicas
		// twice. WAIT confirms the counters, the claim and the record.
		cmd, aerr := s.acked(ctx, tk, "issue", func(p redis.Pipeliner) redis.Cmder {
			return issueScript.Eval(ctx, p, keys, args...)
		})
		if cmd == nil || cmd.Err() != nil {
			s.discard(ctx, tk)
			return IssueResult{}, aerr
		}
		reply = cmd.(*redis.Cmd).Val()
		res, epoch, perr := s.parseIssue(reply, iss.Limits, lefts)
		if perr != nil {
			s.discard(ctx, tk)
			return IssueResult{}, perr
		}
		if aerr != nil {
			if !res.Saved() {
				// A refusal needs no replica: only counters were written.
				return res, nil
			}
			s.discard(ctx, tk)
			if errors.Is(aerr, ErrNotReplicated) {
				return IssueResult{}, fmt.Errorf("%w; the record was deleted and the token not handed out", aerr)
			}
			return IssueResult{}, aerr
		}
		iss.Record.Epoch = epoch
		return res, nil
	}
	res, epoch, err := s.parseIssue(reply, iss.Limits, lefts)
	if err != nil {
		return IssueResult{}, err
	}
	if res.Saved() {
		iss.Record.Epoch = epoch
	}
	return res, nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// parseIssue reads issueScript's answer.
func (s *RedisStore) parseIssue(reply any, limits []Limit, lefts []time.Duration) (IssueResult, int64, error) {
	bad := func(why string) (IssueResult, int64, error) {
		return IssueResult{}, 0, fmt.Errorf("%w: redis EVALSHA (issue): unexpected answer (%s): %v", ErrUnavailable, why, reply)
	}
	arr, ok := reply.([]any)
	if !ok || len(arr) < 2 {
		return bad("not an array of at least two")
	}
	status, ok := arr[0].(int64)
	if !ok {
		return bad("status")
	}
	es, ok := arr[1].(string)
	if !ok {
		return bad("epoch")
	}
	epoch, err := strconv.ParseInt(es, 10, 64)
	if err != nil || epoch < 0 {
		return bad("epoch")
	}
	var res IssueResult
	if len(limits) > 0 {
		if len(arr) != 2+len(limits) {
			return bad("counts")
		}
		res.Limits = make([]LimitResult, len(limits))
		for i, l := range limits {
			n, ok := arr[2+i].(int64)
			if !ok {
				return bad("count")
			}
			res.Limits[i] = limitResult(l, n, lefts[i])
		}
	}
	switch status {
	case 1:
	case 2:
		res.Limited = true
	case 3:
		res.Replayed = true
	default:
		return bad("status")
	}
	if res.Limited != anyLimited(res.Limits) {
		return bad("status and counts disagree")
	}
	return res, epoch, nil
}

// scriptCall is one script call of evalScripts.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

// evalScripts pipelines calls with EVALSHA (one round trip per node) and
// repeats with EVAL only the calls that found no cached script: the others
// have run already, and repeating them would apply them twice (in a
// Cluster the script may be cached on some nodes and not on others).
func (s *RedisStore) evalScripts(ctx context.Context, calls []scriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		var redo []int
		for i, c := range cmds {
			if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				redo = append(redo, i)
			}
		}
		_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, i := range redo {
				cmds[i] = calls[i].script.Eval(ctx, p, calls[i].keys, calls[i].args...)
			}
			return nil
		})
		if err == nil {
			for _, c := range cmds {
				if err = c.Err(); err != nil {
					break
				}
			}
		}
	}
	return cmds, err
}

// issueCluster is Issue on a Cluster without MinReplicasAck: the limits,
// the claim and the epoch in one pipeline, then the record.
func (s *RedisStore) issueCluster(ctx context.Context, iss Issuance, val []byte) (IssueResult, error) {
	now := s.now()
	nl := len(iss.Limits)
	lefts := make([]time.Duration, nl)
	calls := make([]scriptCall, 0, nl+2)
	for i, l := range iss.Limits {
		idx, left := window(now, l.Window)
		lefts[i] = left
		calls = append(calls, scriptCall{rateScript, []string{s.prefix + rlKeyPart + l.Key + ":" + strconv.FormatInt(idx, 10)}, []any{l.Window.Milliseconds()}})
	}
	claim, epoch := -1, -1
	if iss.ClaimKey != "" {
		claim = len(calls)
		calls = append(calls, scriptCall{claimScript, []string{s.prefix + onceKeyPart + iss.ClaimKey}, []any{iss.ClaimOwner, iss.ClaimTTL.Milliseconds()}})
	}
	if iss.EpochKey != "" {
		epoch = len(calls)
		calls = append(calls, scriptCall{epochScript, []string{iss.EpochKey}, []any{iss.Record.ProviderID}})
	}
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	var res IssueResult
	if len(calls) > 0 {
		cmds, err := s.evalScripts(ctx, calls)
		if err != nil && !(epoch >= 0 && errors.Is(cmds[epoch].Err(), redis.Nil) && onlyNil(cmds, epoch)) {
			return res, s.unavailable("EVALSHA (issue)", err)
		}
		if nl > 0 {
			res.Limits = make([]LimitResult, nl)
			for i, l := range iss.Limits {
				n, err := cmds[i].Int64()
				if err != nil {
					return res, s.unavailable("EVALSHA (rate limit)", err)
				}
				res.Limits[i] = limitResult(l, n, lefts[i])
			}
			res.Limited = anyLimited(res.Limits)
		}
		won := false
		if claim >= 0 {
			n, err := cmds[claim].Int64()
			if err != nil {
				return res, s.unavailable("EVALSHA (claim)", err)
			}
			won = n == 1
		}
		if res.Limited {
			if won {
				// Claimed in parallel with the counters: release it, so a
				// refused exchange does not burn the OIDC token.
				if err := s.Unclaim(ctx, iss.ClaimKey, iss.ClaimOwner); err != nil {
					return IssueResult{}, err
				}
			}
			return res, nil
		}
		if claim >= 0 && !won {
			res.Replayed = true
			return res, nil
		}
		if epoch >= 0 {
			e, err := cmds[epoch].Text()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				return res, s.unavailable("HGET (epoch)", err)
			default:
				n, perr := parseEpoch(iss.Record.ProviderID, e)
				if perr != nil {
					return res, perr
				}
				iss.Record.Epoch = n
				if val, err = encodeRecord(iss.Record); err != nil {
					return res, err
				}
			}
		}
	}
	if err := s.client.Set(ctx, s.prefix+tokKeyPart+iss.Hash, val, iss.TTL).Err(); err != nil {
		iss.Record.Epoch = 0
		return res, s.unavailable("SET", err)
	}
	return res, nil
}

// onlyNil reports whether every command but cmds[i] succeeded (cmds[i]
// answered nil, which a pipeline reports as its error).
func onlyNil(cmds []*redis.Cmd, i int) bool {
	for j, c := range cmds {
		if j != i && c.Err() != nil {
			return false
		}
	}
	return true
}

// issueAckedCluster is Issue on a Cluster with MinReplicasAck: each write
// waits for the replicas of its own shard, so the steps run one by one.
func (s *RedisStore) issueAckedCluster(ctx context.Context, iss Issuance) (IssueResult, error) {
	if iss.EpochKey != "" {
		e, err := s.hgetEpoch(ctx, iss.EpochKey, iss.Record.ProviderID)
		if err != nil {
			return IssueResult{}, err
		}
		iss.Record.Epoch = e
	}
	res, err := issueSteps(ctx, s, Issuance{Limits: iss.Limits, ClaimKey: iss.ClaimKey, ClaimOwner: iss.ClaimOwner, ClaimTTL: iss.ClaimTTL,
		Hash: iss.Hash, Record: iss.Record, TTL: iss.TTL})
	if err != nil || !res.Saved() {
		iss.Record.Epoch = 0
	}
	return res, err
}

func (s *RedisStore) hgetEpoch(ctx context.Context, key, providerID string) (int64, error) {
	ctx, cancel := s.ctx(ctx)
	defer cancel()
	e, err := s.client.HGet(ctx, key, providerID).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, s.unavailable("HGET (epoch)", err)
	}
	return parseEpoch(providerID, e)
}

// parseEpoch reads a stored epoch by issueScript's rule: "0" or a
// positive decimal integer of at most 18 digits, without leading zeros.
func parseEpoch(providerID, e string) (int64, error) {
	ok := e == "0" || (len(e) >= 1 && len(e) <= 18 && e[0] >= '1' && e[0] <= '9')
	for i := 0; ok && i < len(e); i++ {
		ok = e[i] >= '0' && e[i] <= '9'
	}
	if !ok {
		return 0, fmt.Errorf("%w: redis: the revocation epoch of provider %s is not a positive integer: %q", ErrUnavailable, providerID, e)
	}
	return strconv.ParseInt(e, 10, 64)
}
