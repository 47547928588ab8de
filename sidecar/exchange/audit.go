package exchange

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
)

// event collects the audit fields of one exchange request. It never holds
// the OIDC token, the issued token or any credential: only the issued
// token's hash (of which the log gets a prefix).
type event struct {
	start        time.Time // wall clock, for duration_ms
	endpoint     string    // "buddy" or "rfc8693"
	decisionID   string
	clientIP     string
	providerID   string
	providerName string
	sub          string
	repository   string
	ref          string
	revision     string
	decision     *policy.ExchangeDecision // the policy's decision, once evaluated
	reasons      []policy.Reason
	oidcError    string // the verifier's error code
	err          string // what failed, for the log
	tokenHash    string
	scopes       []string
	expiresAt    int64
}

// begin starts the audit event of an exchange request.
func (h *Handler) begin(r *http.Request, endpoint string) *event {
	ev := &event{start: time.Now(), endpoint: endpoint, decisionID: newDecisionID(h.now())}
	if ip := h.clients.IP(r); ip.IsValid() {
		ev.clientIP = ip.String()
	}
	return ev
}

// setClaims records the identifying claims of a verified token.
func (ev *event) setClaims(t *oidc.Token) {
	ev.sub = t.Subject
	ev.repository = firstString(t.Claims, "repository", "oidc.circleci.com/vcs-origin", "project_path")
	ev.ref = firstString(t.Claims, "ref", "oidc.circleci.com/vcs-ref")
}

func firstString(c map[string]any, keys ...string) string {
	for _, k := range keys {
		if s, ok := c[k].(string); ok && s != "" {
			if len(s) > maxClaimLen {
				s = s[:maxClaimLen]
			}
			return s
		}
	}
	return ""
}

// decisionPath is the exchange decision as OPA's decision logs name it.
var decisionPath = strings.ReplaceAll(strings.TrimPrefix(policy.ExchangeQuery, "data."), ".", "/")

// finish writes the audit event and the metrics of an exchange request.
func (h *Handler) finish(ctx context.Context, ev *event, f *failure) {
	d := time.Since(ev.start)
	outcome := outcomeIssued
	if f != nil {
		outcome = f.class.outcome()
	}
	codes := make([]string, 0, len(ev.reasons))
	for _, r := range ev.reasons {
		codes = append(codes, r.Code)
	}
	// The provider label is the id only for configured providers, so random
	// ids cannot blow up the metric's cardinality.
	label := "unknown"
	if ev.providerName != "" {
		label = ev.providerID
	}
	h.metrics.Exchange(label, outcome, codes, d)

	attrs := make([]slog.Attr, 0, 20)
	attrs = append(attrs,
		slog.String("event", "exchange"),
		slog.String("endpoint", ev.endpoint),
		slog.String("decision_id", ev.decisionID),
		slog.String("outcome", outcome),
		slog.String("provider_id", ev.providerID),
		slog.String("provider_name", ev.providerName),
		slog.String("sub", ev.sub),
		slog.String("repository", ev.repository),
		slog.String("ref", ev.ref),
		slog.String("client_ip", ev.clientIP),
		slog.String("revision", ev.revision),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000), // milliseconds, to the microsecond (as the proxy's line)
		// OPA decision-log names for what means the same (docs/exchange.md).
		slog.String("timestamp", ev.start.UTC().Format(time.RFC3339Nano)),
	)
	if ev.revision != "" {
		attrs = append(attrs, slog.Group("bundles", slog.Group(policy.Root, slog.String("revision", ev.revision))))
	}
	if ev.decision != nil {
		attrs = append(attrs, slog.String("path", decisionPath))
		if doc, err := ev.decision.DocumentJSON(); err == nil {
			attrs = append(attrs, slog.Any("result", jsonText(doc)))
		}
	}
	if len(ev.reasons) > 0 {
		attrs = append(attrs, slog.Any("reasons", ev.reasons))
	}
	if ev.oidcError != "" {
		attrs = append(attrs, slog.String("oidc_error", ev.oidcError))
	}
	if ev.err != "" {
		attrs = append(attrs, slog.String("error", ev.err))
	}
	if f != nil {
		attrs = append(attrs, slog.String("message", f.msg))
	}
	if ev.tokenHash != "" {
		attrs = append(attrs,
			slog.String("token_hash_prefix", ev.tokenHash[:12]),
			slog.Any("scopes", ev.scopes),
			slog.Int64("expires_at", ev.expiresAt),
		)
	}
	level := slog.LevelInfo
	if outcome == outcomeUnavailable {
		level = slog.LevelWarn
	}
	h.audit.LogAttrs(context.WithoutCancel(ctx), level, "exchange", attrs...)
}

// jsonText is a JSON document already encoded: the JSON handler writes it
// as it is (MarshalJSON), a text handler as its text.
type jsonText []byte

func (j jsonText) MarshalJSON() ([]byte, error) { return j, nil }
func (j jsonText) String() string               { return string(j) }

// crockford is the ULID alphabet.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newDecisionID returns a ULID: 48 bits of Unix milliseconds and 80 random
// bits in Crockford base32 (26 characters), so ids sort by time.
func newDecisionID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	binary.BigEndian.PutUint16(b[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(b[2:6], uint32(ms))
	_, _ = rand.Read(b[6:]) // never fails (Go 1.24+)
	// 128 bits → 26 base32 digits; the first digit holds the top 3 bits.
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
