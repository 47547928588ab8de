package oidc

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// issuerState is the per-issuer key cache. The Verify fast path is one
// sync.Map load, one atomic pointer load and one map lookup; the mutex is
// taken only when something must be fetched.
type issuerState struct {
	issuer   string
	badURL   error // non-nil: the issuer is not a valid issuer URL; never fetched
	keys     atomic.Pointer[keySet]
	bgActive atomic.Bool

	mu             sync.Mutex
	lastKIDRefetch time.Time     // start of the last refetch triggered by an unknown kid
	kidRefetch     chan struct{} // non-nil while that refetch runs; closed when it ends
	lastBgAttempt  time.Time     // start of the last background refresh
	lastFailure    time.Time     // end of the last failed fetch
	lastErr        error         // error of the last fetch, nil after a success
}

func (v *Verifier) state(issuer string) *issuerState {
	if st, ok := v.issuers.Load(issuer); ok {
		return st.(*issuerState)
	}
	st := &issuerState{issuer: issuer, badURL: ValidateIssuerURL(issuer)}
	actual, _ := v.issuers.LoadOrStore(issuer, st)
	return actual.(*issuerState)
}

// fetch starts (or joins) the one fetch of st's discovery document and JWKS
// and returns a channel closed when it has ended. seen is the key set the
// caller found: if another fetch has already replaced it by the time this one
// would start, no HTTP request is made.
func (v *Verifier) fetch(st *issuerState, seen *keySet) <-chan struct{} {
	done := make(chan struct{})
	res := v.sf.DoChan(st.issuer, func() (any, error) {
		if cur := st.keys.Load(); cur != seen {
			return cur, nil
		}
		ctx := context.Background()
		ks, err := v.fetchKeys(ctx, st.issuer)
		st.mu.Lock()
		if err != nil {
			st.lastErr = err
			st.lastFailure = v.now()
		} else {
			st.keys.Store(ks)
			st.lastErr = nil
			st.lastFailure = time.Time{}
		}
		st.mu.Unlock()
		return ks, err
	})
	go func() {
		<-res
		close(done)
	}()
	return done
}

// await waits for done or for ctx to end.
func await(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// failureRetry is how long an issuer that has no keys at all is not asked
// again after a failed fetch: Verify fails fast meanwhile.
func (v *Verifier) failureRetry() time.Duration {
	return min(v.opts.RefreshCooldown, 5*time.Second)
}

// keysFor returns the issuer's current keys, fetching them synchronously on
// first use and starting a background refresh when they are stale.
func (v *Verifier) keysFor(ctx context.Context, st *issuerState) (*keySet, *Error) {
	if ks := st.keys.Load(); ks != nil {
		if v.now().Sub(ks.fetchedAt) >= v.opts.RefreshInterval {
			v.refreshInBackground(st, ks)
		}
		return ks, nil
	}
	if st.badURL != nil {
		return nil, &Error{Code: CodeIssuerUnavailable, Message: st.badURL.Error(), Err: st.badURL}
	}
	st.mu.Lock()
	if err := st.lastErr; err != nil {
		if wait := v.failureRetry() - v.now().Sub(st.lastFailure); wait > 0 {
			st.mu.Unlock()
			return nil, v.unavailable(st, err, wait)
		}
	}
	st.mu.Unlock()
	if err := await(ctx, v.fetch(st, nil)); err != nil {
		return nil, &Error{Code: CodeIssuerUnavailable, Temporary: true, Err: err,
			Message: "no keys for issuer " + quote(st.issuer) + " yet: " + err.Error()}
	}
	if ks := st.keys.Load(); ks != nil {
		return ks, nil
	}
	st.mu.Lock()
	err := st.lastErr
	st.mu.Unlock()
	return nil, v.unavailable(st, err, 0)
}

func (v *Verifier) unavailable(st *issuerState, err error, wait time.Duration) *Error {
	msg := "no keys for issuer " + quote(st.issuer)
	if err != nil {
		msg += ": " + err.Error()
	}
	if wait > 0 {
		msg += " (next attempt allowed in " + fmtDur(wait) + ")"
	}
	return &Error{Code: CodeIssuerUnavailable, Temporary: true, Message: msg, Err: err}
}

// refreshInBackground refetches stale keys without blocking the caller, at
// most one at a time and at most once per cooldown while it keeps failing.
func (v *Verifier) refreshInBackground(st *issuerState, ks *keySet) {
	if st.bgActive.Load() {
		return
	}
	now := v.now()
	st.mu.Lock()
	if st.bgActive.Load() || (!st.lastBgAttempt.IsZero() && now.Sub(st.lastBgAttempt) < v.opts.RefreshCooldown) {
		st.mu.Unlock()
		return
	}
	st.bgActive.Store(true)
	st.lastBgAttempt = now
	st.mu.Unlock()
	done := v.fetch(st, ks)
	go func() {
		<-done
		st.bgActive.Store(false)
	}()
}

// refetchForKID handles a kid that is not in ks. At most one refetch per
// issuer per RefreshCooldown is made; callers that arrive while it runs wait
// for it, callers that arrive after it fail fast until the cooldown has
// passed. It returns the key set to look in again, or an unknown_kid error.
func (v *Verifier) refetchForKID(ctx context.Context, st *issuerState, ks *keySet, kid string) (*keySet, *Error) {
	st.mu.Lock()
	if cur := st.keys.Load(); cur != ks {
		// Someone refreshed the keys since we looked.
		st.mu.Unlock()
		return cur, nil
	}
	done := st.kidRefetch
	if done == nil {
		now := v.now()
		if !st.lastKIDRefetch.IsZero() {
			if wait := v.opts.RefreshCooldown - now.Sub(st.lastKIDRefetch); wait > 0 {
				last, lastErr := st.lastKIDRefetch, st.lastErr
				st.mu.Unlock()
				return nil, v.unknownKID(kid, last, lastErr, wait)
			}
		}
		st.lastKIDRefetch = now
		ch := make(chan struct{})
		st.kidRefetch = ch
		done = ch
		fetched := v.fetch(st, ks)
		go func() {
			<-fetched
			st.mu.Lock()
			st.kidRefetch = nil
			st.mu.Unlock()
			close(ch)
		}()
	}
	st.mu.Unlock()
	if err := await(ctx, done); err != nil {
		return nil, &Error{Code: CodeUnknownKID, Temporary: true, Err: err,
			Message: "signing key " + quote(kid) + " is not in the issuer's key set and the refetch did not finish: " + err.Error()}
	}
	return st.keys.Load(), nil
}

func (v *Verifier) unknownKID(kid string, last time.Time, lastErr error, wait time.Duration) *Error {
	msg := "signing key " + quote(kid) + " is not in the issuer's key set (refetched " + fmtTime(last)
	if lastErr != nil {
		msg += ", which failed: " + lastErr.Error()
	}
	if wait > 0 {
		msg += "; next refetch allowed in " + fmtDur(wait)
	}
	return &Error{Code: CodeUnknownKID, Message: msg + ")", Err: lastErr}
}
