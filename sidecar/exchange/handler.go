// Package exchange serves the sidecar's token-exchange HTTP path: a CI job
// sends the OIDC token its CI system issued and gets a short-lived opaque
// sidecar token for Buddy's API.
//
// Endpoints (see docs/exchange.md for every status and message):
//
//	POST /user/oidc/tokens          Buddy-compatible: JSON in, the bare token (text/plain) out
//	POST /_sidecar/oauth2/token     RFC 8693 token exchange (form in, JSON out)
//	POST /_sidecar/oauth2/revoke    RFC 7009 revocation (bearer possession is the authority)
//	POST /_sidecar/oauth2/introspect  RFC 7662 introspection, admin listener only
//
// Both exchange endpoints run one core (Handler.exchange): validate the
// request, take the current policy snapshot, apply the per-address rate
// limit (one store round trip, before any crypto), verify the OIDC token
// against the provider's issuer, apply the per-provider limit, evaluate the exchange decision in OPA, claim the OIDC
// token once (replay guard), mint a token and save its record with the
// provider's lifetime. Every request writes exactly one audit event. A store
// or policy failure is always a 503, never an allow.
package exchange

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/metrics"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/oidc"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// Paths served by Register and RegisterAdmin.
const (
	BuddyPath      = "/user/oidc/tokens"
	TokenPath      = "/_sidecar/oauth2/token"
	RevokePath     = "/_sidecar/oauth2/revoke"
	IntrospectPath = "/_sidecar/oauth2/introspect"
)

// DefaultMaxBodyBytes caps request bodies when Options.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 64 << 10

// DefaultBodyTimeout bounds the time to receive a request body when
// Options.BodyTimeout is 0. Exchange bodies are a few KiB (an OIDC token is
// at most 16 KiB): a client that needs longer is trickling them.
const DefaultBodyTimeout = 5 * time.Second

// DefaultRateWindow is the rate-limit window when RateLimits.Window is 0.
const DefaultRateWindow = time.Minute

// DefaultIPv6Prefix is RateLimits.IPv6Prefix when 0: an IPv6 host usually
// holds a whole /64, so one address per request would evade PerIP.
const DefaultIPv6Prefix = 64

// RateLimits are fixed-window limits on exchange requests, counted in the
// token store (so every replica shares them). 0 turns a limit off.
type RateLimits struct {
	// PerIP is the number of exchanges one client address may make per Window.
	PerIP int
	// PerProvider is the number of exchanges per Window for one provider,
	// counted only for tokens whose signature verified (provider ids are
	// public: garbage sent for one must not lock it out).
	PerProvider int
	// IPv6Prefix is the length of the network PerIP counts an IPv6 client
	// in; DefaultIPv6Prefix (a /64) when 0, one address when 128.
	IPv6Prefix int
	// Window is the length of a window; DefaultRateWindow when 0.
	Window time.Duration
}

// Options configures a Handler. Engine, Verifier and Store are required.
type Options struct {
	// Engine serves the current policy snapshot; no snapshot means 503.
	Engine *policy.Engine
	// Verifier verifies the OIDC tokens.
	Verifier *oidc.Verifier
	// Store keeps issued tokens, replay claims and rate-limit counters.
	Store token.Store
	// Clients resolves the client address (X-Forwarded-For only from trusted
	// proxies). nil trusts no proxy.
	Clients *clientip.Resolver
	// Metrics, if set, records exchanges, store errors and policy latency.
	Metrics *metrics.Metrics
	// Audit receives one JSON event per exchange request (event=exchange).
	// nil discards the events.
	Audit *slog.Logger
	// Logger receives operational errors (store and policy failures).
	// nil means slog.Default().
	Logger *slog.Logger
	// Leeway is the verifier's clock leeway, used for the replay-claim
	// expiry (exp + leeway). Same convention as oidc.Options.Leeway: 0 means
	// 60s, negative means none.
	Leeway time.Duration
	// RateLimits limits exchanges per client address and per provider.
	RateLimits RateLimits
	// AdminToken is the bearer credential introspection requires; "" turns
	// introspection off (404).
	AdminToken string
	// Now is the clock for policy input, token lifetimes and replay claims.
	// Default time.Now. Give the verifier the same clock.
	Now func() time.Time
	// MaxBodyBytes caps request bodies (413 above it); DefaultMaxBodyBytes
	// when 0.
	MaxBodyBytes int64
	// BuddyResponse is how POST /user/oidc/tokens returns the token:
	// BuddyResponseText (the default when "") or BuddyResponseJSONString.
	BuddyResponse string
	// AdminClientCert also authorizes introspection for a request that
	// presented a client certificate the admin listener verified (mutual
	// TLS), as a second way to hold the admin credential.
	AdminClientCert bool
	// BodyTimeout bounds the time to receive a request body, from the
	// moment the handler starts reading it (408 and the connection closed
	// past it); DefaultBodyTimeout when 0, none when negative. It needs a
	// real connection (http.ResponseController.SetReadDeadline).
	BodyTimeout time.Duration
}

// Handler serves the exchange, revocation and introspection endpoints. It
// is safe for concurrent use.
type Handler struct {
	engine   *policy.Engine
	verifier *oidc.Verifier
	store    token.Store
	clients  *clientip.Resolver
	metrics  *metrics.Metrics
	audit    *slog.Logger
	log      *slog.Logger
	leeway   time.Duration
	limits   RateLimits
	admin    []byte // SHA-256 of AdminToken, nil when introspection is off
	now      func() time.Time
	maxBody  int64
	// buddyJSON: answer the Buddy exchange with a JSON string.
	buddyJSON bool
	// adminCert: a verified client certificate is an admin credential.
	adminCert bool
	bodyTO    time.Duration // <= 0: none
}

// New checks o and returns a Handler.
func New(o Options) (*Handler, error) {
	var missing []string
	if o.Engine == nil {
		missing = append(missing, "Engine")
	}
	if o.Verifier == nil {
		missing = append(missing, "Verifier")
	}
	if o.Store == nil {
		missing = append(missing, "Store")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("exchange: Options.%s must be set", strings.Join(missing, ", Options."))
	}
	rl := o.RateLimits
	if rl.PerIP < 0 || rl.PerProvider < 0 || rl.Window < 0 {
		return nil, fmt.Errorf("exchange: rate limits must not be negative (per_ip %d, per_provider %d, window %s)", rl.PerIP, rl.PerProvider, rl.Window)
	}
	if rl.Window == 0 {
		rl.Window = DefaultRateWindow
	}
	if rl.IPv6Prefix == 0 {
		rl.IPv6Prefix = DefaultIPv6Prefix
	}
	if rl.IPv6Prefix < 0 || rl.IPv6Prefix > 128 {
		return nil, fmt.Errorf("exchange: IPv6 rate-limit prefix /%d is not between /1 and /128", rl.IPv6Prefix)
	}
	if (rl.PerIP > 0 || rl.PerProvider > 0) && rl.Window < time.Second {
		return nil, fmt.Errorf("exchange: rate-limit window %s is shorter than 1s", rl.Window)
	}
	switch o.BuddyResponse {
	case "", BuddyResponseText, BuddyResponseJSONString:
	default:
		return nil, fmt.Errorf("exchange: BuddyResponse %q is not %q or %q", o.BuddyResponse, BuddyResponseText, BuddyResponseJSONString)
	}
	if o.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("exchange: MaxBodyBytes %d is negative", o.MaxBodyBytes)
	}
	h := &Handler{
		engine:   o.Engine,
		verifier: o.Verifier,
		store:    o.Store,
		clients:  o.Clients,
		metrics:  o.Metrics,
		audit:    o.Audit,
		log:      o.Logger,
		leeway:   o.Leeway,
		limits:   rl,
		now:      o.Now,
		maxBody:  o.MaxBodyBytes,

		buddyJSON: o.BuddyResponse == BuddyResponseJSONString,
		adminCert: o.AdminClientCert,
		bodyTO:    o.BodyTimeout,
	}
	if h.clients == nil {
		h.clients = &clientip.Resolver{}
	}
	if h.audit == nil {
		h.audit = slog.New(slog.DiscardHandler)
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	switch {
	case h.leeway == 0:
		h.leeway = 60 * time.Second
	case h.leeway < 0:
		h.leeway = 0
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.bodyTO == 0 {
		h.bodyTO = DefaultBodyTimeout
	}
	if o.AdminToken != "" {
		h.admin = digest(o.AdminToken)
	}
	return h, nil
}

// Register adds the endpoints of the main listener to r: the Buddy-compatible
// exchange, the RFC 8693 token endpoint and RFC 7009 revocation. They answer
// every method (405 for all but POST) so that no other route of r — such as
// the proxy's catch-all — ever sees a request for these paths.
func (h *Handler) Register(r *mux.Router) {
	for _, p := range Paths {
		r.Handle(p, h)
	}
}

// Paths are the main-listener paths Register serves (exactly these, any
// method); every other path is the proxy's.
var Paths = []string{BuddyPath, TokenPath, RevokePath}

// RegisterAdmin adds RFC 7662 introspection to the admin listener's router.
// It answers 404 when Options.AdminToken is "" and Options.AdminClientCert
// is false.
func (h *Handler) RegisterAdmin(r *mux.Router) {
	r.HandleFunc(IntrospectPath, h.serveIntrospect)
}

// ServeHTTP serves the main-listener endpoints without a router (tests,
// embedding); other paths get 404.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case BuddyPath:
		h.serveBuddy(w, r)
	case TokenPath:
		h.serveToken(w, r)
	case RevokePath:
		h.serveRevoke(w, r)
	default:
		http.NotFound(w, r)
	}
}

// errTooLarge reports a body over the limit.
var errTooLarge = errors.New("request body too large")

// errBodyTimeout reports a body that did not arrive within the body timeout.
var errBodyTimeout = errors.New("request body timed out")

// classBodyTimeout: the body did not arrive in time (408).
const classBodyTimeout class = 100

// readBody reads the whole request body up to h.maxBody bytes, within
// h.bodyTO. A body that is late gets errBodyTimeout and the connection is
// closed after the response (Connection: close), so a client trickling a
// body holds a connection for seconds, not for timeouts.read.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.ContentLength > h.maxBody {
		return nil, errTooLarge
	}
	var rc *http.ResponseController
	if h.bodyTO > 0 {
		if c := http.NewResponseController(w); c.SetReadDeadline(time.Now().Add(h.bodyTO)) == nil {
			rc = c
		}
	}
	body, err := readAll(http.MaxBytesReader(w, r.Body, h.maxBody), r.ContentLength)
	if rc != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The deadline stays in the past, so net/http does not wait for
		// the rest of the body after the response either: it closes the
		// connection at once.
		w.Header().Set("Connection", "close")
		return nil, errBodyTimeout
	}
	if rc != nil {
		// Once the body is in, no deadline: net/http's background read
		// (which notices a client going away) must not time out while the
		// exchange runs. The next request sets its own.
		_ = rc.SetReadDeadline(time.Time{})
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, errTooLarge
	}
	return body, err
}

// readAll is io.ReadAll into a buffer sized for a declared Content-Length
// (at most maxBody, checked by the caller), so a body arrives in one
// allocation instead of io.ReadAll's doublings.
func readAll(r io.Reader, length int64) ([]byte, error) {
	if length <= 0 {
		return io.ReadAll(r)
	}
	buf := make([]byte, 0, length+1) // +1: EOF is seen without growing
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // a longer body than declared: grow
		}
	}
}

// bodyTimeoutFailure is the failure for errBodyTimeout.
func (h *Handler) bodyTimeoutFailure() *failure {
	return fail(classBodyTimeout, "the request body did not arrive within %s of the request; exchange bodies are small, so send the whole body at once. The connection is closed.", h.bodyTO)
}
