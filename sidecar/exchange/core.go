package exchange

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// class classifies a failed exchange; each endpoint maps it to its status
// and error code, and the audit log to an outcome.
type class int

const (
	classBadRequest      class = iota + 1 // malformed request
	classTooLarge                         // body over the limit
	classMethod                           // not POST
	classUnsupportedType                  // RFC 8693 unsupported_grant_type
	classUnknownProvider                  // no provider with that id
	classInvalidToken                     // the OIDC token failed verification
	classDenied                           // the policy denied the exchange
	classIPNotAllowed                     // the only reasons are ip_not_allowed
	classInvalidScope                     // requested scopes the provider does not grant
	classReplayed                         // the OIDC token was exchanged before
	classRateLimited                      // a rate limit is exhausted
	classUnavailable                      // store, policy or issuer unavailable
)

// Audit outcomes.
const (
	outcomeIssued       = "issued"
	outcomeDenied       = "denied"
	outcomeInvalidToken = "invalid_token"
	outcomeBadRequest   = "bad_request"
	outcomeRateLimited  = "rate_limited"
	outcomeUnavailable  = "unavailable"
	outcomeReplayed     = "replayed"
)

func (k class) outcome() string {
	switch k {
	case classBadRequest, classTooLarge, classMethod, classUnsupportedType, classBodyTimeout:
		return outcomeBadRequest
	case classUnknownProvider, classDenied, classIPNotAllowed, classInvalidScope:
		return outcomeDenied
	case classInvalidToken:
		return outcomeInvalidToken
	case classReplayed:
		return outcomeReplayed
	case classRateLimited:
		return outcomeRateLimited
	}
	return outcomeUnavailable
}

// failure is a refused exchange. msg is safe to send to the caller: it never
// holds a claim value of a generic-detail provider, the OIDC token, or a
// sidecar token.
type failure struct {
	class      class
	msg        string
	retryAfter time.Duration // rate limits
}

func fail(k class, format string, args ...any) *failure {
	return &failure{class: k, msg: fmt.Sprintf(format, args...)}
}

// request is an exchange request after endpoint-specific parsing.
type request struct {
	providerID   string   // a canonical lower-case UUID
	subjectToken string   // the raw OIDC token
	scopes       []string // requested scopes; nil = none requested
}

// grant is an issued token.
type grant struct {
	token    string // the sidecar token; sent to the caller once, never logged
	rec      *token.Record
	lifetime time.Duration
}

// replayMessage is the 401 message of a second exchange of one OIDC token.
const replayMessage = "this OIDC token was already exchanged; request a fresh one from your CI provider"

// exchange runs the shared exchange core and fills ev for the audit log.
// It returns either a grant or a failure.
func (h *Handler) exchange(ctx context.Context, req request, ev *event) (*grant, *failure) {
	ev.providerID = req.providerID

	// 1. The policy snapshot, taken once for the whole request.
	snap := h.engine.Current()
	if snap == nil {
		ev.err = "no policy snapshot loaded"
		return nil, fail(classUnavailable, "no policy is loaded yet, so no token can be issued; retry in a few seconds (operators: see the sidecar's /readyz and logs) (decision %s)", ev.decisionID)
	}
	ev.revision = snap.Revision

	// 2. The per-address limit: one store round trip, before any crypto
	// work. (The per-provider limit waits for a verified signature: provider
	// ids are public, and garbage sent for one must not lock it out.)
	if f := h.limitIP(ctx, ev); f != nil {
		return nil, f
	}

	// 3. The provider.
	p := snap.Providers[req.providerID]
	if p == nil {
		ev.reasons = []policy.Reason{{Code: "unknown_provider", Message: fmt.Sprintf("no OIDC provider has the id %q", req.providerID)}}
		return nil, fail(classUnknownProvider, "no OIDC provider has the id %s; check provider_id: it must be the id of a provider configured in the sidecar's providers file (decision %s)", req.providerID, ev.decisionID)
	}
	ev.providerName = p.Name

	// 4. Verify the OIDC token against the provider's own issuer.
	tok, err := h.verifier.Verify(ctx, req.subjectToken, oidc.Expect{Issuer: p.Issuer, Audience: p.Audience, MaxAge: p.MaxTokenAge, MaxLifetime: p.EffectiveMaxTokenLifetime()})
	if err != nil {
		return nil, h.verifyFailure(p, err, ev)
	}
	ev.setClaims(tok)

	// 5. The exchange decision.
	now := h.now()
	start := time.Now()
	d, err := snap.Exchange(ctx, policy.ExchangeInput{
		ProviderID:      string(p.ID),
		Claims:          tok.Claims,
		ClientIP:        ev.clientIP,
		Time:            now,
		RequestedScopes: req.scopes,
	})
	h.metrics.PolicyEval("exchange", time.Since(start))
	if err != nil {
		h.metrics.PolicyEvalError("exchange")
		h.log.Error("exchange decision failed; refusing the exchange", "decision_id", ev.decisionID, "provider_id", p.ID, "revision", snap.Revision, "error", err.Error())
		ev.err = "policy evaluation: " + err.Error()
		return nil, fail(classUnavailable, "the exchange policy could not be evaluated, so no token was issued; retry later, and if it persists tell the sidecar's operators (decision %s)", ev.decisionID)
	}
	ev.decision = d
	if d.Revision != "" {
		ev.revision = d.Revision
	}
	if d.ProviderName != "" {
		ev.providerName = d.ProviderName
	}
	if !d.Allow {
		ev.reasons = d.Reasons
		return nil, denial(p, ev.providerName, ev.clientIP, d.Reasons, ev.decisionID)
	}
	if len(d.InvalidScopes) > 0 {
		ev.reasons = []policy.Reason{{Code: "invalid_scope", Message: "requested scopes not granted by the provider: " + strings.Join(d.InvalidScopes, " ")}}
		return nil, fail(classInvalidScope, "provider %q does not grant the requested scope %s; request only scopes among %s (decision %s)",
			ev.providerName, strings.Join(d.InvalidScopes, ", "), strings.Join(p.Scopes, " "), ev.decisionID)
	}

	// 6. Mint, then write everything at once (token.Issue: one Redis
	// round trip on a single server or Sentinel): the per-provider limit,
	// the replay guard and the record. The per-provider limit counts only
	// exchanges the policy allowed — verified tokens that met the trust
	// conditions —, so neither unverifiable tokens nor tokens that any
	// repository on the same issuer can mint lock a provider out. The
	// replay claim holds a random owner, so that this exchange can release
	// it (and only it) if the write fails.
	lifetime := time.Duration(d.LifetimeSeconds) * time.Second
	raw, hash, err := token.New()
	if err != nil {
		h.log.Error("minting a token failed", "decision_id", ev.decisionID, "error", err.Error())
		ev.err = err.Error()
		return nil, fail(classUnavailable, "the sidecar could not mint a token; retry later (decision %s)", ev.decisionID)
	}
	rec := &token.Record{
		ProviderID:     string(p.ID),
		ProviderName:   ev.providerName,
		Subject:        tok.Subject,
		Issuer:         tok.Issuer,
		Claims:         selectClaims(tok.Claims),
		Scopes:         d.Scopes,
		Workspaces:     d.Workspaces,
		IPRestrictions: d.IPRestrictions,
		IssuedAt:       now.Unix(),
		ExpiresAt:      now.Add(lifetime).Unix(),
		DecisionID:     ev.decisionID,
	}
	if rec.Scopes == nil {
		rec.Scopes = []string{}
	}
	iss := token.Issuance{Hash: hash, Record: rec, TTL: lifetime}
	if h.limits.PerProvider > 0 {
		iss.Limits = []token.Limit{{Key: "exchange:provider:" + string(p.ID), Max: h.limits.PerProvider, Window: h.limits.Window}}
	}
	if !p.AllowTokenReuse {
		iss.ClaimKey, iss.ClaimOwner = replayKey(tok), token.NewClaimOwner()
		// Verify refused tokens whose exp is more than the provider's
		// maximum lifetime after iat; the cap holds the key's TTL to it
		// whatever exp says.
		until := tok.ExpiresAt
		if limit := tok.IssuedAt.Add(p.EffectiveMaxTokenLifetime()); limit.Before(until) {
			until = limit
		}
		iss.ClaimTTL = max(until.Add(h.leeway).Sub(now), time.Second)
	}
	res, err := token.Issue(ctx, h.store, iss)
	if err != nil {
		// The outcome is unknown: the store may have applied the claim
		// (and even saved the record of a token nobody gets) and lost the
		// reply. Still a 503 (never an allow), but release the claim if it
		// is ours, so the client's retry with the same OIDC token is not
		// refused as a replay.
		f := h.storeFailure("issue", err, ev)
		h.unclaim(ctx, iss.ClaimKey, iss.ClaimOwner, ev)
		return nil, f
	}
	if res.Limited {
		return nil, h.limited(ev, res.Limits[0],
			fmt.Sprintf("for provider %s: at most %d per %s", p.ID, h.limits.PerProvider, fmtDur(h.limits.Window)))
	}
	if res.Replayed {
		return nil, fail(classReplayed, "%s", replayMessage)
	}
	ev.tokenHash = hash
	ev.scopes = rec.Scopes
	ev.expiresAt = rec.ExpiresAt
	return &grant{token: raw, rec: rec, lifetime: lifetime}, nil
}

// limitIP applies the per-address limit, before the token is looked at.
// IPv6 clients are counted per network of h.limits.IPv6Prefix bits (a /64
// by default: one host usually holds a whole /64).
func (h *Handler) limitIP(ctx context.Context, ev *event) *failure {
	if h.limits.PerIP <= 0 {
		return nil
	}
	bucket := rateBucket(ev.clientIP, h.limits.IPv6Prefix)
	return h.rateLimit(ctx, ev,
		token.Limit{Key: "exchange:ip:" + bucket, Max: h.limits.PerIP, Window: h.limits.Window},
		fmt.Sprintf("from %s: at most %d per %s", bucket, h.limits.PerIP, fmtDur(h.limits.Window)))
}

// rateBucket is the per-address rate-limit key of a client address: the
// address itself for IPv4 (also IPv4-mapped IPv6), its enclosing /prefix
// network for IPv6. Anything unparsable is used as is.
func rateBucket(client string, prefix int) string {
	a, err := netip.ParseAddr(client)
	if err != nil {
		return client
	}
	a = a.Unmap()
	if a.Is4() || prefix <= 0 || prefix >= 128 {
		return a.WithZone("").String()
	}
	p, err := a.WithZone("").Prefix(prefix)
	if err != nil {
		return client
	}
	return p.String()
}

// rateLimit counts one request against limit in one Store.Allow call.
func (h *Handler) rateLimit(ctx context.Context, ev *event, limit token.Limit, what string) *failure {
	limits := []token.Limit{limit}
	res, err := h.store.Allow(ctx, limits...)
	if err != nil {
		return h.storeFailure("rate_limit", err, ev)
	}
	if len(res) != len(limits) {
		ev.err = fmt.Sprintf("rate limit: store returned %d results for %d limits", len(res), len(limits))
		h.log.Error("token store returned a wrong number of rate-limit results", "decision_id", ev.decisionID, "want", len(limits), "got", len(res))
		return fail(classUnavailable, "the token store answered the rate-limit check incorrectly, so no token was issued; retry later (decision %s)", ev.decisionID)
	}
	if res[0].Allowed {
		return nil
	}
	return h.limited(ev, res[0], what)
}

// limited is the 429 of an exhausted limit.
func (h *Handler) limited(ev *event, res token.LimitResult, what string) *failure {
	retry := max(ceilSecond(res.RetryAfter), time.Second)
	ev.err = "rate limited: " + what
	f := fail(classRateLimited, "too many token exchanges %s; retry in %s", what, fmtDur(retry))
	f.retryAfter = retry
	return f
}

// ceilSecond rounds d up to whole seconds.
func ceilSecond(d time.Duration) time.Duration {
	return (d + time.Second - 1) / time.Second * time.Second
}

// run is the part both exchange endpoints share: it starts the audit
// event (its decision id goes out as X-Decision-Id whatever the outcome),
// parses the request with the endpoint's parser, exchanges, and records the
// outcome. The endpoint writes the answer in its own shape.
func (h *Handler) run(w http.ResponseWriter, r *http.Request, endpoint string, parse func(http.ResponseWriter, *http.Request) (request, *failure)) (*grant, *failure) {
	ev := h.begin(r, endpoint)
	w.Header().Set("X-Decision-Id", ev.decisionID)
	req, f := parse(w, r)
	var g *grant
	if f == nil {
		g, f = h.exchange(r.Context(), req, ev)
	}
	h.finish(r.Context(), ev, f)
	return g, f
}

// overloadRetry is the Retry-After of an overload 503.
const overloadRetry = time.Second

// storeFailure logs a store error and returns the 503. Overload (no free
// store connection: token.ErrOverloaded) has its own message, metric and
// Retry-After, and does not blame the store.
func (h *Handler) storeFailure(op string, err error, ev *event) *failure {
	if errors.Is(err, token.ErrOverloaded) {
		h.metrics.StoreOverload(op)
		h.log.Warn("sidecar overloaded during an exchange: no free token store connection in time; refusing it", "op", op, "decision_id", ev.decisionID, "error", err.Error())
		ev.err = "overloaded (" + op + "): " + err.Error()
		f := fail(classUnavailable, "the sidecar is overloaded (too many requests at once for its token store connections), so no token was issued; retry in %s (decision %s)", fmtDur(overloadRetry), ev.decisionID)
		f.retryAfter = overloadRetry
		return f
	}
	h.metrics.StoreError(op)
	h.log.Error("token store failed during an exchange; refusing it", "op", op, "decision_id", ev.decisionID, "error", err.Error())
	ev.err = "token store (" + op + "): " + err.Error()
	if errors.Is(err, token.ErrNotReplicated) {
		return fail(classUnavailable, "the token store could not confirm the token on enough Redis replicas (redis.min_replicas_ack), so no token was issued; retry in a few seconds (decision %s)", ev.decisionID)
	}
	return fail(classUnavailable, "the token store is unavailable, so no token was issued; retry in a few seconds (decision %s)", ev.decisionID)
}

// unclaimTimeout bounds the best-effort release of a replay claim. The
// store's own per-operation timeout (Redis: 250ms by default) applies too.
const unclaimTimeout = 250 * time.Millisecond

// unclaim releases this exchange's replay claim (key held by owner) after a
// claim whose reply was lost or a failure to mint or save, so the OIDC token
// is not burned. The store deletes the key only if it still holds owner, so
// a claim that another exchange won is never released. It is best effort,
// on a fresh short context detached from the request's (which may be
// cancelled or past its deadline). It never changes the exchange's answer.
func (h *Handler) unclaim(ctx context.Context, key, owner string, ev *event) {
	if key == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unclaimTimeout)
	defer cancel()
	if err := h.store.Unclaim(ctx, key, owner); err != nil {
		h.metrics.StoreError("unclaim")
		h.log.Error("could not release the replay claim of an OIDC token whose exchange failed; if the claim was stored, the token cannot be exchanged again until it expires",
			"decision_id", ev.decisionID, "error", err.Error())
	}
}

// replayKey is the replay-guard key of a verified token: the issuer and jti,
// hashed (they are caller-controlled), or without jti the hash of what the
// signature covers (header and payload, never the signature bytes, which
// an ECDSA signer's token can carry in two valid forms: s and n-s).
func replayKey(t *oidc.Token) string {
	if t.JTI == "" {
		return "jws:" + t.Hash
	}
	sum := sha256.Sum256([]byte(t.Issuer + "\x00" + t.JTI))
	return "jti:" + hex.EncodeToString(sum[:])
}

// verifyFailure maps a verification error to a failure.
func (h *Handler) verifyFailure(p *provider.Provider, err error, ev *event) *failure {
	var oe *oidc.Error
	if !errors.As(err, &oe) {
		// Not a verdict on the token (e.g. the request was cancelled).
		ev.err = "verification: " + err.Error()
		return fail(classUnavailable, "the OIDC token could not be verified right now; retry in a few seconds (decision %s)", ev.decisionID)
	}
	ev.oidcError = oe.Code
	ev.err = oe.Message
	if oe.Temporary {
		h.log.Warn("OIDC issuer unavailable during an exchange", "issuer", p.Issuer, "provider_id", p.ID, "error", oe.Message)
		return fail(classUnavailable, "the keys of the OIDC issuer %s could not be fetched (%s), so the token cannot be verified; retry in a few seconds (decision %s)", p.Issuer, oe.Message, ev.decisionID)
	}
	msg := oe.Message
	generic := p.DenialDetail == provider.DenialGeneric
	switch oe.Code {
	case oidc.CodeWrongIssuer:
		if generic {
			msg = "its iss claim is not the provider's issuer"
		}
		msg += "; the token comes from another OIDC provider than this provider_id expects: check provider_id"
	case oidc.CodeWrongAudience:
		if generic {
			msg = "its aud claim does not contain the provider's audience"
		} else {
			msg += fmt.Sprintf("; request the OIDC token with audience %q", p.Audience)
		}
	case oidc.CodeMissingClaim:
		if generic && strings.HasPrefix(msg, "token has no aud") {
			msg = "token has no aud claim"
		}
	case oidc.CodeLifetimeTooLong:
		msg += fmt.Sprintf("; provider %q accepts OIDC tokens valid for at most %s after iat (its max_token_lifetime): request a token with a shorter lifetime, or ask the sidecar's operators to raise max_token_lifetime if the issuer's tokens legitimately live longer",
			p.Name, fmtDur(p.EffectiveMaxTokenLifetime()))
	case oidc.CodeExpired, oidc.CodeTooOld:
		msg += "; request a fresh token from your CI provider right before the exchange"
	case oidc.CodeNotYetValid, oidc.CodeIssuedInFuture:
		msg += "; check the clocks of the CI runner and the sidecar"
	case oidc.CodeUnknownKID, oidc.CodeBadSignature, oidc.CodeMissingKID, oidc.CodeUnsupportedAlgorithm, oidc.CodeForbiddenHeader:
		msg += fmt.Sprintf("; the token was not signed by a key of %s", p.Issuer)
	case oidc.CodeMalformed:
		// Only when the value is not shaped like a JWS at all: a token
		// whose header or claims are wrong (types, duplicates, depth) was
		// sent correctly, and the hint would mislead.
		if oe.Shape {
			msg += "; send the raw JWT your CI provider issued, without quotes or a \"Bearer \" prefix"
		}
	case oidc.CodeTooLarge:
		msg += "; CI OIDC tokens are a few KiB at most: send only the token"
	}
	return fail(classInvalidToken, "OIDC token rejected: %s", msg)
}

// denial builds the failure for a policy denial. With denial_detail
// "conditions" it names the failed conditions (never the actual claim
// values); with "generic" it names none. Actual values go to the audit log.
func denial(p *provider.Provider, name, clientIP string, reasons []policy.Reason, decisionID string) *failure {
	onlyIP := len(reasons) > 0
	for _, r := range reasons {
		if r.Code != "ip_not_allowed" {
			onlyIP = false
		}
	}
	generic := p.DenialDetail == provider.DenialGeneric
	if onlyIP {
		if generic {
			return fail(classIPNotAllowed, "OIDC token rejected by provider %q: requests from %s are not allowed by the provider's IP restrictions; exchange from an allowed network (decision %s)", name, clientIP, decisionID)
		}
		return fail(classIPNotAllowed, "OIDC token rejected by provider %q: %s; exchange from an allowed network (decision %s)", name, reasons[0].Message, decisionID)
	}
	if generic {
		return fail(classDenied, "OIDC token rejected by provider %q: the token did not satisfy the provider's trust conditions (decision %s)", name, decisionID)
	}
	var conds, others []string
	for _, r := range reasons {
		switch {
		case r.Condition != "":
			c := r.Condition
			if r.Missing {
				c += " (claim missing)"
			}
			conds = append(conds, c)
		case r.Message != "":
			others = append(others, r.Message)
		default:
			others = append(others, r.Code)
		}
	}
	var parts []string
	if len(conds) == 1 {
		parts = append(parts, "this trust condition failed: "+conds[0])
	} else if len(conds) > 1 {
		parts = append(parts, "these trust conditions failed: "+strings.Join(conds, "; "))
	}
	parts = append(parts, others...)
	return fail(classDenied, "OIDC token rejected by provider %q: %s (decision %s)", name, strings.Join(parts, "; "), decisionID)
}

// selectedClaims are copied into the token record (string values only).
var selectedClaims = []string{
	"repository", "repository_owner", "ref", "workflow", "job_workflow_ref", "actor",
	"environment", "event_name", "run_id", "sha",
	"oidc.circleci.com/project-id", "oidc.circleci.com/vcs-ref", "oidc.circleci.com/vcs-origin",
}

// maxClaimLen bounds a copied claim value.
const maxClaimLen = 1024

func selectClaims(c map[string]any) map[string]string {
	var out map[string]string
	for _, k := range selectedClaims {
		s, ok := c[k].(string)
		if !ok || s == "" || len(s) > maxClaimLen {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(selectedClaims))
		}
		out[k] = s
	}
	return out
}

// parseProviderID reads a provider ID sent by a client: provider.ParseID
// after lower-casing, since CI systems may send the UUID in upper case. It
// returns the canonical ID, or "" if s is not a provider ID.
func parseProviderID(s string) string {
	id, err := provider.ParseID(strings.ToLower(s))
	if err != nil {
		return ""
	}
	return string(id)
}

// quote returns s as an ASCII Go string literal, truncated: for echoing
// caller input in messages.
func quote(s string) string {
	const maxQuoted = 64
	if len(s) > maxQuoted {
		return strconv.QuoteToASCII(s[:maxQuoted]) + "..."
	}
	return strconv.QuoteToASCII(s)
}

// fmtDur formats whole-second durations compactly: 60s, 1m, 1h30m.
func fmtDur(d time.Duration) string {
	if d < time.Minute || d%time.Minute != 0 {
		return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10) + "s"
	}
	return provider.FormatLifetime(d)
}

// retryAfterHeader sets Retry-After in whole seconds.
func retryAfterHeader(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
}

// splitScopes splits an RFC 6749 scope parameter and drops duplicates.
func splitScopes(s string) []string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil
	}
	slices.Sort(f)
	return slices.Compact(f)
}
