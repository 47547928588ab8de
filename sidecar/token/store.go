package token

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Record is what the store keeps for an issued token, under the token's Hash.
// It is serialised as compact JSON.
type Record struct {
	ProviderID   string            `json:"provider_id"`
	ProviderName string            `json:"provider_name"`
	Subject      string            `json:"sub"`
	Issuer       string            `json:"iss"`
	Claims       map[string]string `json:"claims,omitempty"` // selected claims: repository, ref, workflow, actor, ... (strings)
	Scopes       []string          `json:"scopes"`
	// Workspaces lists the workspaces the token may act on. nil means all
	// workspaces (JSON null); an empty, non-nil slice means none. Stores keep the
	// distinction.
	Workspaces     []string `json:"workspaces"`
	IPRestrictions []string `json:"ip_restrictions,omitempty"`
	IssuedAt       int64    `json:"iat"` // Unix seconds
	ExpiresAt      int64    `json:"exp"` // Unix seconds
	DecisionID     string   `json:"decision_id,omitempty"`
	// Epoch is the provider's revocation epoch when the token was issued
	// (sidecar/revocation): the token has ended once its provider's epoch
	// is higher. 0 for providers never revoked in bulk.
	Epoch int64 `json:"epoch,omitempty"`
}

// Expired reports whether the record's ExpiresAt has been reached at now
// (JWT semantics: the token is not valid on or after exp). A zero ExpiresAt
// never expires by this check; the store's native expiry still applies.
func (r *Record) Expired(now time.Time) bool {
	return r.ExpiresAt != 0 && now.Unix() >= r.ExpiresAt
}

// Store keeps issued tokens (by hash), replay-guard claims and rate-limit counters.
// Implementations are safe for concurrent use.
//
// Error contract: ErrNotFound is returned only when the backend answered and the
// token is unknown, expired or revoked. When the backend cannot answer (down,
// timeout, auth failure, ...) the error wraps ErrUnavailable, so callers can fail
// closed with 503 and never mistake an outage for "not found" or "first use".
type Store interface {
	// Save stores rec under the token hash with native expiry ttl (Redis: SET key value EX/PX ttl).
	Save(ctx context.Context, hash string, rec *Record, ttl time.Duration) error
	// Get returns the record, ErrNotFound for unknown/expired/revoked (also when
	// rec.ExpiresAt has passed, defence in depth), or an error wrapping
	// ErrUnavailable when the backend cannot answer.
	Get(ctx context.Context, hash string) (*Record, error)
	// Revoke deletes the token; reports whether it existed.
	Revoke(ctx context.Context, hash string) (bool, error)
	// ClaimOnce is the replay guard: it stores owner under key with expiry ttl
	// unless the key is held already. It returns true when the key is now
	// held by owner: this call set it, or an earlier call with the same owner
	// did (so a command that the Redis client resends after a lost reply is
	// not mistaken for a replay). False means another owner holds it. owner
	// must be unique per claim attempt: use NewClaimOwner.
	//
	// An error means the outcome is unknown: the claim may have been applied
	// even though its reply was lost. Callers fail closed and may release it
	// with Unclaim(key, owner).
	ClaimOnce(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	// Unclaim deletes key only if it is held by owner (compare and delete,
	// atomically), so it never releases somebody else's claim. It is used when
	// a claim's reply was lost or minting failed after the claim, so the OIDC
	// token is not burned. Releasing a missing key or one held by another
	// owner is not an error.
	Unclaim(ctx context.Context, key, owner string) error
	// Allow applies fixed-window rate limits for several keys in ONE round trip
	// and returns one result per limit, in order.
	Allow(ctx context.Context, limits ...Limit) ([]LimitResult, error)
	// Ping checks that the backend answers.
	Ping(ctx context.Context) error
	// Kind is "redis" or "memory".
	Kind() string
	// Close releases resources; the store must not be used afterwards.
	Close() error
}

// Limit is one fixed-window rate limit: at most Max hits per Window for Key.
// Windows are aligned to the Unix epoch (window index = now / Window), so every
// sidecar instance sharing a store counts into the same window.
type Limit struct {
	Key    string
	Max    int
	Window time.Duration
}

// LimitResult is the outcome of one Limit in an Allow call.
type LimitResult struct {
	// Allowed is false once the window holds more than Max hits (this one included).
	Allowed bool
	// Remaining is how many more hits the window allows (never negative).
	Remaining int
	// RetryAfter is the time until the current window ends; zero when Allowed.
	RetryAfter time.Duration
}

var (
	// ErrNotFound means the token is unknown, expired or revoked.
	ErrNotFound = errors.New("token: not found")
	// ErrUnavailable means the store could not answer; errors wrapping it say what failed.
	ErrUnavailable = errors.New("token store unavailable")
	// ErrOverloaded means the store could not answer because this process
	// asked too much of it at once: no connection became free in time
	// (every one busy with other operations). Errors wrapping it wrap
	// ErrUnavailable too; callers that tell overload from failure test it
	// first, answer 503 with Retry-After, and do not blame the store.
	ErrOverloaded = errors.New("token store overloaded: more concurrent operations than connections")
)

// DefaultKeyPrefix is the default namespace for every key the stores write.
const DefaultKeyPrefix = "oidc-sidecar:"

// maxKeyLen bounds ClaimOnce and Limit keys, which may contain client-supplied
// values (jti, IP addresses); hash longer values before passing them.
const maxKeyLen = 1024

// Key layout, below the configurable prefix.
const (
	tokKeyPart  = "tok:"
	onceKeyPart = "once:"
	rlKeyPart   = "rl:"
)

func checkTTL(what string, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return fmt.Errorf("token: %s: ttl must be at least 1ms, got %s", what, ttl)
	}
	return nil
}

func checkKey(what, key string) error {
	if key == "" {
		return fmt.Errorf("token: %s: empty key", what)
	}
	if len(key) > maxKeyLen {
		return fmt.Errorf("token: %s: key is %d bytes, limit is %d (hash long values first)", what, len(key), maxKeyLen)
	}
	return nil
}

// maxOwnerLen bounds ClaimOnce owners (NewClaimOwner's are 32 bytes).
const maxOwnerLen = 128

// NewClaimOwner returns a fresh owner for ClaimOnce and Unclaim: 16
// crypto/rand bytes in lowercase hex. (crypto/rand.Read never returns an
// error since Go 1.24; it crashes the program instead.)
func NewClaimOwner() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func checkOwner(what, owner string) error {
	if owner == "" {
		return fmt.Errorf("token: %s: empty owner (use NewClaimOwner)", what)
	}
	if len(owner) > maxOwnerLen {
		return fmt.Errorf("token: %s: owner is %d bytes, limit is %d", what, len(owner), maxOwnerLen)
	}
	return nil
}

func checkSave(hash string, rec *Record, ttl time.Duration) error {
	if !validHash(hash) {
		return errors.New("token: Save: hash must be 64 lowercase hex characters (token.Hash)")
	}
	if rec == nil {
		return errors.New("token: Save: nil record")
	}
	return checkTTL("Save", ttl)
}

func checkLimits(limits []Limit) error {
	for i, l := range limits {
		if err := checkKey("Allow", l.Key); err != nil {
			return fmt.Errorf("%w (limit %d)", err, i)
		}
		if l.Max < 1 {
			return fmt.Errorf("token: Allow: limit %d (%q): Max must be at least 1, got %d", i, l.Key, l.Max)
		}
		if l.Window < time.Millisecond {
			return fmt.Errorf("token: Allow: limit %d (%q): Window must be at least 1ms, got %s", i, l.Key, l.Window)
		}
	}
	return nil
}

// window returns the index of the fixed window containing now and the time
// left until it ends (always > 0).
func window(now time.Time, w time.Duration) (index int64, left time.Duration) {
	ms := now.UnixMilli()
	wms := w.Milliseconds()
	index = ms / wms
	if ms < 0 && ms%wms != 0 { // floor for pre-1970 clocks
		index--
	}
	end := (index + 1) * wms
	return index, time.Duration(end-ms) * time.Millisecond
}

// limitResult turns a window count into a LimitResult.
func limitResult(l Limit, count int64, left time.Duration) LimitResult {
	r := LimitResult{Allowed: count <= int64(l.Max)}
	if rem := int64(l.Max) - count; rem > 0 {
		r.Remaining = int(rem)
	}
	if !r.Allowed {
		r.RetryAfter = left
	}
	return r
}
