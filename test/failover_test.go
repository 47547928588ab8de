package test

// Redis failover under load (issue #13, item 4): three `serve` processes
// on a Sentinel group (one primary, one replica, three sentinels) or a
// Cluster (three primaries, three replicas) while the primary holding
// keys in use is killed by PID. Correctness is asserted — nothing is
// allowed that should not be (revoked tokens, replayed OIDC tokens,
// unknown tokens), the sidecars recover (awaited with a generous
// deadline) and answer without errors afterwards, tokens settled before
// the failover survive it — and the timings are measured and logged, not
// asserted: docs/benchmarks.md records them.
//
//	go test ./test -run TestFailover -v                       one short failover per topology (CI)
//	OIDC_SIDECAR_LOAD=long go test ./test -run TestFailover -v -timeout 30m
//	                                                          5 failovers per topology, 20 s of load around each

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
)

// failoverRecovery bounds the wait for the sidecars to answer again after
// the kill: generous, because correctness (recovery happens) is asserted,
// not its speed (measured).
const failoverRecovery = 90 * time.Second

// topology is a Redis deployment whose primary can be killed.
type topology struct {
	name  string
	redis map[string]any // the sidecar's redis block (without min_replicas_ack)
	// primary returns the data node currently serving key (the one to kill).
	primary func(t *testing.T, key string) *redistest.Server
	// promoted reports whether a node other than old now serves key.
	promoted func(t *testing.T, old *redistest.Server, key string) bool
	// settled reports whether every running replica has everything its
	// primary wrote so far.
	settled func(t *testing.T) bool
	// stall, when set, stalls the replication link to the primary's
	// replica before the kill: what the primary writes meanwhile is lost
	// with it (a lagging replica, a partition).
	stall func()
}

func sentinelTopology(t *testing.T) *topology { return sentinelReplicas(t, 1, false) }

// stalledTopology is Sentinel with one replica whose replication link
// stalls for the last half second before the primary dies.
func stalledTopology(t *testing.T) *topology { return sentinelReplicas(t, 1, true) }

func sentinelReplicas(t *testing.T, replicas int, stallable bool) *topology {
	g := redistest.StartSentinelGroup(t, redistest.SentinelOptions{
		Name: "sidecar", Replicas: replicas, Sentinels: 3, DownAfter: time.Second, FailoverTimeout: 5 * time.Second,
		StallableLinks: stallable,
	})
	var stall func()
	if stallable {
		stall = func() {
			for _, l := range g.Links {
				l.Stall()
			}
		}
	}
	return &topology{
		name:    fmt.Sprintf("sentinel, %d replica(s)", replicas),
		stall:   stall,
		redis:   map[string]any{"addrs": g.SentinelAddrs(), "master_name": g.Name},
		primary: func(t *testing.T, _ string) *redistest.Server { return g.Primary(t) },
		promoted: func(t *testing.T, old *redistest.Server, _ string) bool {
			p := g.Primary(t)
			if p == old {
				return false
			}
			info, err := p.Client().Info(context.Background(), "replication").Result()
			// The failover must be over on every sentinel before the old
			// primary may come back (see the restart below).
			return err == nil && strings.Contains(info, "role:master") && g.FailoverDone(t, old)
		},
		settled: func(t *testing.T) bool {
			ok, err := redistest.InSync(context.Background(), g.Primary(t), g.Servers)
			return err == nil && ok
		},
	}
}

func clusterTopology(t *testing.T) *topology {
	nodes := redistest.StartClusterWithReplicas(t, redistest.ClusterOptions{Primaries: 3, ReplicasEach: 1, NodeTimeout: time.Second})
	return &topology{
		name:    "cluster, 3 primaries + 3 replicas",
		redis:   map[string]any{"addrs": redistest.ClusterAddrs(nodes[:3])},
		primary: func(t *testing.T, key string) *redistest.Server { return redistest.ClusterPrimaryForKey(t, nodes, key) },
		promoted: func(t *testing.T, old *redistest.Server, key string) bool {
			return redistest.ClusterPrimaryForKey(t, nodes, key) != old
		},
		settled: func(t *testing.T) bool {
			ctx := context.Background()
			for _, n := range nodes {
				if !n.Running() {
					continue
				}
				info, err := n.Client().Info(ctx, "replication").Result()
				if err != nil {
					return false
				}
				if !strings.Contains(info, "role:master") {
					continue
				}
				if ok, err := redistest.InSync(ctx, n, nodes); err != nil || !ok {
					return false
				}
			}
			return true
		},
	}
}

// TestFailover kills the Redis primary under three sidecars under load,
// once per topology (five times each with OIDC_SIDECAR_LOAD=long). With
// OIDC_SIDECAR_LOAD=long or OIDC_SIDECAR_FAILOVER=ack it also runs with
// redis.min_replicas_ack 1 (Sentinel with one and with two replicas,
// Cluster with one replica per primary).
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the failover test starts up to 9 Redis processes and 3 sidecars per topology")
	}
	rounds, load := 1, 2*time.Second
	long := os.Getenv("OIDC_SIDECAR_LOAD") == "long"
	if long {
		rounds, load = 5, 20*time.Second
	}
	withAck := long || os.Getenv("OIDC_SIDECAR_FAILOVER") == "ack"
	for _, c := range []struct {
		name string
		top  func(*testing.T) *topology
		ack  int
	}{
		{"sentinel", sentinelTopology, 0},
		{"cluster", clusterTopology, 0},
		{"sentinel-ack1", sentinelTopology, 1},
		{"sentinel-2replicas-ack1", func(t *testing.T) *topology { return sentinelReplicas(t, 2, false) }, 1},
		{"cluster-ack1", clusterTopology, 1},
		// The replication link stalls 500 ms before the kill: what is lost
		// without min_replicas_ack, and what it costs with it.
		{"sentinel-stalled", stalledTopology, 0},
		{"sentinel-stalled-ack1", stalledTopology, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			if (c.ack > 0 || strings.Contains(c.name, "stalled")) && !withAck {
				t.Skip("min_replicas_ack and stalled-link failovers run with OIDC_SIDECAR_FAILOVER=ack or OIDC_SIDECAR_LOAD=long")
			}
			r := rounds
			if strings.Contains(c.name, "stalled") {
				r = 1 // the stallable link is gone with the first primary
			}
			failoverScenario(t, c.top(t), c.ack, r, load)
		})
	}
}

// outcome of one request, for the failure log.
type failure struct {
	at   time.Time
	what string
}

// The write behind an answer happens between the request's start and its
// answer: a request started before the kill may have written to the old
// primary even if its answer came after it, so losses are attributed by
// the start time.
type issued struct {
	tok, jwt string
	sent     time.Time // when the exchange was sent
	at       time.Time // when its 200 arrived
}

type revoked struct {
	tok  string
	sent time.Time // when the revocation was sent
	at   time.Time // when its 200 arrived
}

// failoverLoad is the steady load: exchanges on every replica, the new
// token used on another, some tokens revoked on a third and then probed,
// exchanged OIDC tokens replayed, unknown tokens tried.
type failoverLoad struct {
	w        *world
	rs       []*sidecar
	ack      int
	mu       sync.Mutex
	issued   []issued
	revoked  []revoked
	failures []failure // 503s and transport errors (expected only around the kill)
	wrong    []string  // allowed although it should not have been
	lost     []string  // a 401 for a token that was issued (its record lost)
	ops      atomic.Int64
	// killAt is when the primary was killed (zero before); allows of
	// revocations/claims made shortly before it are explained by the
	// failover when ack is 0 (asynchronous replication).
	killAt atomic.Pointer[time.Time]
}

// try sends one request without failing the test (workers are goroutines).
func try(method, u, ctype, body, tok string) (int, string, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, "", err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func (l *failoverLoad) exchange(s *sidecar, jwt string) (int, string, error) {
	body, _ := json.Marshal(map[string]string{"provider_id": ghID, "web_identity_token": jwt})
	return try(http.MethodPost, s.URL+"/user/oidc/tokens", "application/json", string(body), "")
}

func (l *failoverLoad) use(s *sidecar, tok string) (int, string, error) {
	return try(http.MethodGet, s.URL+replicaPath, "", "", tok)
}

func (l *failoverLoad) revoke(s *sidecar, tok string) (int, string, error) {
	return try(http.MethodPost, s.URL+"/_sidecar/oauth2/revoke", "application/x-www-form-urlencoded", url.Values{"token": {tok}}.Encode(), "")
}

func (l *failoverLoad) fail(what string, status int, body string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		what += ": " + err.Error()
	} else {
		what += fmt.Sprintf(": HTTP %d %s", status, truncate(body, 200))
	}
	l.failures = append(l.failures, failure{time.Now(), what})
}

// nearKill reports whether a request sent at at, in the second before the
// kill, may have written to the old primary only: a write lost by the
// failover when nothing waited for the replicas.
func (l *failoverLoad) nearKill(at time.Time) bool {
	k := l.killAt.Load()
	return l.ack == 0 && k != nil && at.Before(*k) && k.Sub(at) < time.Second
}

func (l *failoverLoad) worker(stop <-chan struct{}, id int) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		l.ops.Add(1)
		a, b := l.rs[rng.IntN(3)], l.rs[rng.IntN(3)]
		switch {
		case i%5 == 4: // an earlier token: issued ones work, revoked ones do not
			l.mu.Lock()
			var iss *issued
			var rev *revoked
			if len(l.revoked) > 0 && rng.IntN(2) == 0 {
				r := l.revoked[rng.IntN(len(l.revoked))]
				rev = &r
			} else if len(l.issued) > 0 {
				x := l.issued[rng.IntN(len(l.issued))]
				iss = &x
			}
			l.mu.Unlock()
			switch {
			case rev != nil:
				st, body, err := l.use(a, rev.tok)
				switch {
				case err != nil || st == http.StatusServiceUnavailable:
					l.fail("use revoked", st, body, err)
				case st == http.StatusOK && time.Since(rev.at) > 1100*time.Millisecond:
					// Within 1 s another replica may still have it cached if
					// the invalidation could not be published (documented
					// bound); later it is a wrong allow — unless the DEL was
					// lost with the primary.
					l.mu.Lock()
					msg := fmt.Sprintf("a token revoked %s ago was allowed on %s", time.Since(rev.at).Round(time.Millisecond), a.URL)
					if l.nearKill(rev.sent) {
						l.lost = append(l.lost, "revocation lost: "+msg)
					} else {
						l.wrong = append(l.wrong, msg)
					}
					l.mu.Unlock()
				case st != http.StatusOK && st != http.StatusUnauthorized:
					l.fail("use revoked", st, body, err)
				}
			case iss != nil:
				l.useIssued(a, *iss)
			}
		case i%7 == 6: // an unknown token is never allowed
			st, body, err := l.use(a, "ocs_"+strings.Repeat("x", 49))
			switch {
			case err != nil || st == http.StatusServiceUnavailable:
				l.fail("use unknown", st, body, err)
			case st == http.StatusOK:
				l.mu.Lock()
				l.wrong = append(l.wrong, "an unknown token was allowed on "+a.URL)
				l.mu.Unlock()
			case st != http.StatusUnauthorized:
				l.fail("use unknown", st, body, err)
			}
		default: // exchange on a, use on b; now and then revoke or replay
			jwt, err := l.w.gh.Sign(l.w.ghClaims())
			if err != nil {
				l.fail("signing", 0, "", err)
				continue
			}
			sent := time.Now()
			st, body, err := l.exchange(a, jwt)
			if err != nil || st != http.StatusOK {
				l.fail("exchange", st, body, err)
				continue
			}
			var tok string
			if err := json.Unmarshal([]byte(body), &tok); err != nil {
				l.fail("exchange answer", st, body, err)
				continue
			}
			it := issued{tok: tok, jwt: jwt, sent: sent, at: time.Now()}
			l.useIssued(b, it)
			switch i % 3 {
			case 0:
				c := l.rs[rng.IntN(3)]
				sent := time.Now()
				st, body, err := l.revoke(c, tok)
				if err != nil || st != http.StatusOK {
					l.fail("revoke", st, body, err)
					// Unknown outcome: keep it out of both lists.
					continue
				}
				l.mu.Lock()
				l.revoked = append(l.revoked, revoked{tok, sent, time.Now()})
				l.mu.Unlock()
				continue
			case 1:
				st, body, err := l.exchange(l.rs[rng.IntN(3)], jwt)
				switch {
				case err != nil || st == http.StatusServiceUnavailable:
					l.fail("replay", st, body, err)
				case st == http.StatusOK:
					l.mu.Lock()
					msg := "a replayed OIDC token was exchanged again"
					if l.nearKill(it.sent) {
						l.lost = append(l.lost, "replay claim lost: "+msg)
					} else {
						l.wrong = append(l.wrong, msg)
					}
					l.mu.Unlock()
				case st != http.StatusUnauthorized || !strings.Contains(body, "already"):
					l.fail("replay", st, body, err)
				}
			}
			l.mu.Lock()
			l.issued = append(l.issued, it)
			l.mu.Unlock()
		}
	}
}

func (l *failoverLoad) useIssued(s *sidecar, it issued) {
	st, body, err := l.use(s, it.tok)
	switch {
	case err != nil || st == http.StatusServiceUnavailable:
		l.fail("use", st, body, err)
	case st == http.StatusUnauthorized:
		// The record is gone: lost with the primary (issued shortly before
		// the kill without waiting for the replicas).
		l.mu.Lock()
		defer l.mu.Unlock()
		msg := fmt.Sprintf("a token issued at %s answered 401 on %s", it.at.Format("15:04:05.000"), s.URL)
		if k := l.killAt.Load(); k != nil && it.sent.Before(*k) {
			l.lost = append(l.lost, "token lost: "+msg)
		} else {
			l.wrong = append(l.wrong, "refused although issued after the kill: "+msg)
		}
	case st != http.StatusOK:
		l.fail("use", st, body, err)
	}
}

// run runs n workers until stop is closed.
func (l *failoverLoad) run(n int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); l.worker(stop, i) }()
	}
	return &wg
}

func failoverScenario(t *testing.T, top *topology, ack, rounds int, load time.Duration) {
	w := newWorld(t, worldOpts{noRedis: true})
	cfg := w.config()
	rc := map[string]any{}
	for k, v := range top.redis {
		rc[k] = v
	}
	rc["min_replicas_ack"] = ack
	cfg["redis"] = rc
	rs := startReplicas(t, cfg, 3)
	l := &failoverLoad{w: w, rs: rs, ack: ack}

	// Settled state: tokens, some revoked, their OIDC tokens used; then
	// wait until the replicas have all of it.
	var settled []issued
	var settledRevoked []string
	for i := range 30 {
		jwt := w.ghToken(t, nil)
		tok := rs[i%3].mustExchange(t, ghID, jwt)
		if i%3 == 0 {
			expectStatus(t, rs[(i+1)%3].revoke(t, tok), http.StatusOK)
			settledRevoked = append(settledRevoked, tok)
			continue
		}
		settled = append(settled, issued{tok: tok, jwt: jwt, at: time.Now()})
	}
	await(t, awaitTimeout, "the replicas to have every settled write", func() bool { return top.settled(t) })

	channel := keyPrefix + "invalidate"
	for round := 1; round <= rounds; round++ {
		stop := make(chan struct{})
		wg := l.run(4, stop)
		time.Sleep(load) // steady load before the kill: the measurement needs time, not a condition
		// The node holding the invalidation channel's slot holds tokens,
		// claims and (Sentinel) everything else too.
		victim := top.primary(t, channel)
		incident := time.Now()
		if top.stall != nil && round == 1 {
			top.stall()
			time.Sleep(500 * time.Millisecond) // the writes made now reach only the primary
		}
		pid := victim.Pid()
		opsBefore := l.ops.Load()
		kill := time.Now()
		l.killAt.Store(&kill)
		victim.Stop() // SIGKILL by PID
		t.Logf("round %d: killed primary %s (pid %d) at %s after %d operations", round, victim.Addr(), pid, kill.Format("15:04:05.000"), opsBefore)

		// Recovery: a new primary, then every sidecar reads from it.
		await(t, failoverRecovery, "a replica to be promoted", func() bool { return top.promoted(t, victim, channel) })
		promoted := time.Since(kill)
		next := 0
		await(t, failoverRecovery, "every sidecar to read from the new primary", func() bool {
			// A settled token not used for a while is not in any cache: its
			// lookup reaches Redis.
			for _, s := range rs {
				it := settled[next%len(settled)]
				next++
				if st, _, err := l.use(s, it.tok); err != nil || st != http.StatusOK {
					return false
				}
			}
			return true
		})
		// The killed node comes back empty (no persistence) and rejoins as
		// a replica — only now: restarted before every sidecar has moved to
		// the new primary, it is an empty primary at the old address, and a
		// sidecar still pointed there writes tokens to it that vanish when
		// the sentinels make it a replica (seen in a long run: 11 tokens
		// issued after the kill lost, with a restart right after the
		// promotion). Restarted before the promotion, it would be taken back
		// as the primary and every key lost.
		restarted := time.Since(kill)
		victim.Restart()
		await(t, failoverRecovery, "every sidecar to exchange and proxy again", func() bool {
			for _, s := range rs {
				st, body, err := l.exchange(s, w.ghToken(t, nil))
				if err != nil || st != http.StatusOK {
					return false
				}
				var tok string
				if json.Unmarshal([]byte(body), &tok) != nil {
					return false
				}
				for _, o := range rs {
					if st, _, err := l.use(o, tok); err != nil || st != http.StatusOK {
						return false
					}
				}
			}
			return true
		})
		recovered := time.Since(kill)
		await(t, failoverRecovery, "every invalidation subscription to be up again", func() bool {
			for _, s := range rs {
				_, r := s.readyz(t)
				if inv, _ := r["invalidation"].(map[string]any); inv["subscription_up"] != true {
					return false
				}
			}
			return true
		})
		await(t, failoverRecovery, "the restarted node to be an in-sync replica", func() bool { return top.settled(t) })
		recoveredAt := time.Now()
		time.Sleep(load) // steady load after recovery
		close(stop)
		wg.Wait()

		l.mu.Lock()
		var first, last time.Time
		var lastProxy, lastWrite time.Time
		var after []string
		for _, f := range l.failures {
			switch {
			case f.at.Before(incident):
				t.Errorf("round %d: failure before the kill: %s", round, f.what)
			case f.at.After(recoveredAt):
				after = append(after, f.what)
			default:
				if first.IsZero() {
					first = f.at
				}
				last = f.at
				if strings.HasPrefix(f.what, "use") {
					lastProxy = f.at
				} else {
					lastWrite = f.at
				}
			}
		}
		since := func(x time.Time) time.Duration {
			if x.IsZero() {
				return 0
			}
			return x.Sub(kill).Round(time.Millisecond)
		}
		if os.Getenv("OIDC_SIDECAR_FAILOVER_DEBUG") != "" {
			for _, f := range l.failures {
				t.Logf("  +%s %s", f.at.Sub(kill).Round(time.Millisecond), truncate(f.what, 160))
			}
			for _, s := range rs {
				for _, line := range s.logs.Lines(`"level":"ERROR"`) {
					t.Logf("  %s: %s", s.URL, truncate(line, 400))
				}
			}
		}
		window := time.Duration(0)
		if !first.IsZero() {
			window = last.Sub(first)
		}
		if kill.Sub(incident) > time.Millisecond {
			t.Logf("round %d: the replication link stalled %s before the kill", round, kill.Sub(incident).Round(time.Millisecond))
		}
		t.Logf("round %d (%s, min_replicas_ack %d): %d requests failed (503 or no answer) between %s and %s after the kill (window %s); "+
			"last failed proxied request %s, last failed exchange/revocation %s after the kill; "+
			"promoted (failover complete) after %s, killed server restarted after %s, every sidecar answering after %s; %d operations in all",
			round, top.name, ack, len(l.failures), since(first), since(last),
			window.Round(time.Millisecond), since(lastProxy), since(lastWrite), promoted.Round(time.Millisecond), restarted.Round(time.Millisecond), recovered.Round(time.Millisecond), l.ops.Load())
		for _, a := range after {
			t.Errorf("round %d: error after recovery: %s", round, a)
			if i := strings.Index(a, "(decision "); i >= 0 {
				id := strings.TrimRight(a[i+len("(decision "):], `)"}]…`)
				id = id[:min(len(id), 26)]
				for _, s := range rs {
					for _, line := range s.logs.Lines(id) {
						t.Logf("  %s: %s", s.URL, line)
					}
				}
			}
		}
		if len(after) > 0 {
			for _, s := range rs {
				lines := s.logs.Lines(`"level":"ERROR"`)
				t.Logf("%s: last errors: %s", s.URL, strings.Join(lines[max(0, len(lines)-5):], "\n"))
			}
		}
		for _, wr := range l.wrong {
			t.Errorf("round %d: WRONG ALLOW: %s", round, wr)
		}
		l.failures, l.wrong = nil, nil
		l.mu.Unlock()
	}

	// After the failovers, without load: settled tokens work everywhere,
	// settled revocations and replays stay refused; count what the load
	// issued before the kill(s) and what still works.
	for _, it := range settled {
		for _, s := range rs {
			expectStatus(t, s.call(t, http.MethodGet, replicaPath, it.tok), http.StatusOK)
		}
		expectError(t, rs[0].exchangeBuddy(t, ghID, it.jwt), http.StatusUnauthorized, "already")
	}
	for _, tok := range settledRevoked {
		for _, s := range rs {
			expectStatus(t, s.call(t, http.MethodGet, replicaPath, tok), http.StatusUnauthorized)
		}
	}
	l.mu.Lock()
	issuedAll, revokedAll, lostDuring := l.issued, l.revoked, l.lost
	l.mu.Unlock()
	kill := *l.killAt.Load()
	var before, works int
	var lostAt []time.Duration
	for _, it := range issuedAll {
		if !it.sent.Before(kill) {
			continue
		}
		before++
		r := rs[0].call(t, http.MethodGet, replicaPath, it.tok)
		switch r.Status {
		case http.StatusOK:
			works++
		case http.StatusUnauthorized:
			lostAt = append(lostAt, kill.Sub(it.sent))
		default:
			t.Errorf("a token issued before the last kill: %s", r)
		}
	}
	// The OIDC tokens exchanged in the last 2 s before the kill: a replay
	// must still be refused (its claim survived the failover).
	replayed, tried := 0, 0
	for _, it := range issuedAll {
		if !it.sent.Before(kill) || kill.Sub(it.sent) > 2*time.Second {
			continue
		}
		tried++
		r := rs[2].exchangeBuddy(t, ghID, it.jwt)
		switch {
		case r.Status == http.StatusOK && ack == 0:
			replayed++
		case r.Status == http.StatusOK:
			t.Errorf("WRONG ALLOW: an OIDC token exchanged %s before the kill was exchanged again after it", kill.Sub(it.sent).Round(time.Millisecond))
		case r.Status != http.StatusUnauthorized:
			t.Errorf("a replay after the failover: %s", r)
		}
	}
	revived := 0
	for _, rv := range revokedAll {
		r := rs[1].call(t, http.MethodGet, replicaPath, rv.tok)
		switch {
		case r.Status == http.StatusOK && l.nearKill(rv.sent):
			revived++
		case r.Status == http.StatusOK:
			t.Errorf("WRONG ALLOW: a token revoked at %s (kill at %s) works after the failover", rv.at.Format("15:04:05.000"), kill.Format("15:04:05.000"))
		case r.Status != http.StatusUnauthorized:
			t.Errorf("a revoked token after the failover: %s", r)
		}
	}
	sort.Slice(lostAt, func(i, j int) bool { return lostAt[i] < lostAt[j] })
	lastLost := time.Duration(0)
	if len(lostAt) > 0 {
		lastLost = lostAt[len(lostAt)-1]
	}
	t.Logf("%s, min_replicas_ack %d: of the %d tokens the load got before the last kill, %d still work after it (lost: %d, issued between %v and %v before the kill); "+
		"%d settled tokens all work; %d revocations made under load, %d undone by the failover; "+
		"%d of the %d OIDC tokens exchanged in the last 2 s before the kill could be exchanged again (replay claim lost); %d losses seen during the load: %v",
		top.name, ack, before, works, len(lostAt), percentile(lostAt, 0), lastLost.Round(time.Millisecond), len(settled), len(revokedAll), revived, replayed, tried, len(lostDuring), truncate(fmt.Sprint(lostDuring), 600))
	if ack > 0 && (len(lostAt) > 0 || revived > 0 || replayed > 0 || len(lostDuring) > 0) {
		t.Errorf("with min_replicas_ack %d no acknowledged write may be lost: %d tokens lost, %d revocations undone, %v", ack, len(lostAt), revived, lostDuring)
	}
}

// TestMinReplicasAck: with redis.min_replicas_ack the exchange answers
// only once the token's record is on the replicas; when Redis cannot
// confirm it, the answer is a 503 saying so, no token is handed out, its
// record is deleted and the OIDC token's replay claim released.
func TestMinReplicasAck(t *testing.T) {
	w := newWorld(t, worldOpts{noRedis: true})
	primary := redistest.Start(t, redistest.WithArgs(redistest.FastSyncArgs()...))
	replica := redistest.StartReplica(t, primary)
	cfg := w.config()
	cfg["redis"] = map[string]any{"url": primary.URL(), "min_replicas_ack": 1}
	one := startSidecar(t, cfg, nil)
	cfg["redis"] = map[string]any{"url": primary.URL(), "min_replicas_ack": 2}
	two := startSidecar(t, cfg, nil)
	cfg["redis"] = map[string]any{"url": primary.URL()}
	zero := startSidecar(t, cfg, nil)

	// One replica required, one there: the record is on it when the answer comes.
	r0 := one.exchangeBuddy(t, ghID, w.ghToken(t, nil))
	if r0.Status != http.StatusOK {
		t.Fatalf("%s\n%s", r0, one.logs.String())
	}
	tok := bareToken(t, r0)
	if n, err := replica.Client().Exists(ctxT(t), tokenKey(tok)).Result(); err != nil || n != 1 {
		t.Fatalf("the token's record on the replica when the exchange answered: %d, %v", n, err)
	}
	expectStatus(t, two.call(t, http.MethodGet, replicaPath, tok), http.StatusOK)

	// Two required: 503, clearly, and nothing left behind.
	keys := func() int {
		ks, err := primary.Client().Keys(ctxT(t), keyPrefix+"tok:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return len(ks)
	}
	before := keys()
	jwt := w.ghToken(t, nil)
	r := two.exchangeBuddy(t, ghID, jwt)
	expectError(t, r, http.StatusServiceUnavailable, "could not confirm the token on enough Redis replicas (redis.min_replicas_ack)", "no token was issued")
	if got := keys(); got != before {
		t.Fatalf("%d token records after the refused exchange, %d before: the unconfirmed one was not deleted", got, before)
	}
	await(t, awaitTimeout, "the refusal's log line", func() bool {
		return len(two.logs.Lines("reached 1 of the 2 replica(s) redis.min_replicas_ack requires", "not handed out")) > 0
	})
	// The OIDC token was not burned: it can be exchanged where Redis can confirm it.
	one.mustExchange(t, ghID, jwt)

	// What waiting costs an exchange (measured, logged, not asserted):
	// alternate exchanges on the sidecar that does not wait and on the one
	// that waits for one replica.
	n := 300
	switch {
	case testing.Short():
		n = 30
	case os.Getenv("OIDC_SIDECAR_LOAD") == "long":
		n = 3000
	}
	lat := map[*sidecar][]time.Duration{}
	for i := range 2 * n {
		s := []*sidecar{zero, one}[i%2]
		r := s.exchangeBuddy(t, ghID, w.ghToken(t, nil))
		expectStatus(t, r, http.StatusOK)
		lat[s] = append(lat[s], r.Dur)
	}
	for _, s := range []*sidecar{zero, one} {
		sort.Slice(lat[s], func(i, j int) bool { return lat[s][i] < lat[s][j] })
	}
	t.Logf("exchange latency over %d exchanges each (client-side, loopback, one replica): min_replicas_ack 0: p50 %s p99 %s; min_replicas_ack 1: p50 %s p99 %s; added: p50 %s p99 %s",
		n, percentile(lat[zero], 0.5), percentile(lat[zero], 0.99), percentile(lat[one], 0.5), percentile(lat[one], 0.99),
		percentile(lat[one], 0.5)-percentile(lat[zero], 0.5), percentile(lat[one], 0.99)-percentile(lat[zero], 0.99))

	// A revocation Redis cannot confirm is not reported as done.
	expectStatus(t, two.revoke(t, tok), http.StatusServiceUnavailable)
	expectStatus(t, one.revoke(t, tok), http.StatusOK)
	expectStatus(t, two.call(t, http.MethodGet, replicaPath, tok), http.StatusUnauthorized)
}
