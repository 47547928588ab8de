// Package revocation makes N sidecar replicas behave as one service when a
// token ends: an RFC 7009 revocation, a bulk revocation of one provider's
// tokens, or a provider's removal.
//
// Two mechanisms, one code path for both stores:
//
//   - Events on a bus. Every event that ends tokens is published (Redis:
//     SPUBLISH on one sharded channel; the in-memory store: an in-process
//     bus). Every replica subscribes and drops the cached record and reused
//     decisions at once. When the subscription is lost, the proxy's 1 s
//     record cache still bounds how long a revoked token works; when it is
//     (re)established, the replica flushes its cache, since messages may
//     have been lost meanwhile.
//
//   - Per-provider epochs. A bulk revocation (and a provider's removal)
//     raises the provider's epoch: a number kept in one Redis hash, set to
//     max(previous + 1, Redis server time in ms), so it is also the cut-off
//     time. Every token record carries the epoch its provider had when it
//     was issued (read from the backend in the same call that saves it); the
//     proxy refuses a record whose epoch is below its provider's current
//     one. Replicas learn new epochs from the bus at once and, whatever the
//     subscription's state, re-read all epochs every second.
package revocation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/token"
)

// Event is one message on the bus.
type Event struct {
	// Hash is the token.Hash of one revoked token (RFC 7009), or "".
	Hash string `json:"h,omitempty"`
	// ProviderID and Epoch: every token of the provider issued under an
	// epoch below Epoch has ended (bulk revocation or removal).
	ProviderID string `json:"p,omitempty"`
	Epoch      int64  `json:"e,omitempty"`
}

func (e Event) valid() bool {
	return (e.Hash != "" && e.ProviderID == "") || (e.Hash == "" && e.ProviderID != "" && e.Epoch > 0)
}

// Backend carries events between replicas and keeps the epochs.
type Backend interface {
	// Publish sends e to every subscriber (this process's included).
	Publish(ctx context.Context, e Event) error
	// Subscribe delivers events to on until ctx ends. It calls state(true,
	// nil) each time a subscription is (re)established — after which the
	// caller must assume it missed messages — and state(false, err) when it
	// is lost. It reconnects by itself and returns when ctx ends.
	Subscribe(ctx context.Context, on func(Event), state func(up bool, err error))
	// Epoch returns providerID's current epoch (0: never raised).
	Epoch(ctx context.Context, providerID string) (int64, error)
	// Epochs returns every raised epoch.
	Epochs(ctx context.Context) (map[string]int64, error)
	// RaiseEpoch sets providerID's epoch to max(current+1, server time in
	// unix milliseconds) and returns it.
	RaiseEpoch(ctx context.Context, providerID string) (int64, error)
	// Kind is "redis" or "memory".
	Kind() string
}

// Metrics receives the hub's counts; nil-safe implementations only.
type Metrics interface {
	InvalidationPublished()
	InvalidationReceived()
	InvalidationSubscription(up bool)
}

// Hub is one process's view: it subscribes, applies events to the
// registered caches, and keeps the epochs.
type Hub struct {
	backend Backend
	log     *slog.Logger
	metrics Metrics
	poll    time.Duration

	mu      sync.Mutex
	epochs  map[string]int64
	epochsV atomic.Pointer[map[string]int64] // read without the lock by the proxy
	forget  []func(hash string)
	flush   []func()

	up       atomic.Bool
	lastErr  atomic.Pointer[string]
	since    atomic.Int64 // unix nanos of the last state change
	received atomic.Int64
}

// Options configures New.
type Options struct {
	Backend Backend // required
	Logger  *slog.Logger
	Metrics Metrics
	// EpochPoll is how often every epoch is re-read (default 1s): the bound
	// on a bulk revocation's reach when the subscription is down.
	EpochPoll time.Duration
}

// DefaultEpochPoll is Options.EpochPoll's default.
const DefaultEpochPoll = time.Second

// New returns a hub; call Run to subscribe.
func New(o Options) (*Hub, error) {
	if o.Backend == nil {
		return nil, errors.New("revocation: Options.Backend is required")
	}
	h := &Hub{backend: o.Backend, log: o.Logger, metrics: o.Metrics, poll: o.EpochPoll, epochs: map[string]int64{}}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.poll <= 0 {
		h.poll = DefaultEpochPoll
	}
	m := map[string]int64{}
	h.epochsV.Store(&m)
	h.since.Store(time.Now().UnixNano())
	if h.metrics != nil {
		h.metrics.InvalidationSubscription(false)
	}
	return h, nil
}

// OnInvalidate registers a cache: forget(hash) drops one token, flush()
// drops everything. Call before Run.
func (h *Hub) OnInvalidate(forget func(hash string), flush func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if forget != nil {
		h.forget = append(h.forget, forget)
	}
	if flush != nil {
		h.flush = append(h.flush, flush)
	}
}

// Load reads every epoch once (at start-up, before serving).
func (h *Hub) Load(ctx context.Context) error {
	all, err := h.backend.Epochs(ctx)
	if err != nil {
		return err
	}
	h.mergeEpochs(all)
	return nil
}

// Run subscribes and polls the epochs until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(h.poll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				pctx, cancel := context.WithTimeout(ctx, h.poll)
				all, err := h.backend.Epochs(pctx)
				cancel()
				if err == nil {
					h.mergeEpochs(all)
				}
			}
		}
	}()
	h.backend.Subscribe(ctx, h.apply, h.setState)
	wg.Wait()
	h.setState(false, nil)
}

func (h *Hub) setState(up bool, err error) {
	was := h.up.Swap(up)
	if err != nil {
		msg := err.Error()
		h.lastErr.Store(&msg)
	} else if up {
		h.lastErr.Store(nil)
	}
	if was != up {
		h.since.Store(time.Now().UnixNano())
	}
	if h.metrics != nil {
		h.metrics.InvalidationSubscription(up)
	}
	if up {
		// Messages may have been lost while down (or before the first
		// subscription): forget everything cached and re-read the epochs.
		h.flushAll()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if all, err := h.backend.Epochs(ctx); err == nil {
			h.mergeEpochs(all)
		}
		cancel()
		if was != up {
			h.log.Info("invalidation subscription established; token cache flushed", "backend", h.backend.Kind())
		}
	} else if was {
		e := ""
		if err != nil {
			e = err.Error()
		}
		h.log.Warn("invalidation subscription lost; revocations on other replicas take effect here within the token cache TTL (1s) until it is back", "error", e)
	}
}

// apply handles one received event.
func (h *Hub) apply(e Event) {
	h.received.Add(1)
	if h.metrics != nil {
		h.metrics.InvalidationReceived()
	}
	if !e.valid() {
		h.log.Warn("ignoring a malformed invalidation message", "event", fmt.Sprintf("%+v", e))
		h.flushAll() // unknown content: be safe
		return
	}
	if e.Hash != "" {
		h.forgetHash(e.Hash)
		return
	}
	h.mergeEpochs(map[string]int64{e.ProviderID: e.Epoch})
	h.flushAll()
}

func (h *Hub) forgetHash(hash string) {
	h.mu.Lock()
	fs := h.forget
	h.mu.Unlock()
	for _, f := range fs {
		f(hash)
	}
}

func (h *Hub) flushAll() {
	h.mu.Lock()
	fs := h.flush
	h.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// mergeEpochs raises known epochs (they never go down).
func (h *Hub) mergeEpochs(in map[string]int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	changed := false
	for id, v := range in {
		if v > h.epochs[id] {
			h.epochs[id] = v
			changed = true
		}
	}
	if changed {
		m := make(map[string]int64, len(h.epochs))
		for k, v := range h.epochs {
			m[k] = v
		}
		h.epochsV.Store(&m)
	}
}

// Epoch returns the provider's epoch as this process knows it (no I/O):
// a record with a smaller epoch has ended.
func (h *Hub) Epoch(providerID string) int64 {
	return (*h.epochsV.Load())[providerID]
}

// Ended reports whether rec was ended by its provider's epoch.
func (h *Hub) Ended(rec *token.Record) bool {
	return rec != nil && rec.Epoch < h.Epoch(rec.ProviderID)
}

// TokenRevoked publishes the revocation of one token (after the store
// deleted it) and forgets it locally at once, whether or not the publish
// succeeds (other replicas then refuse it within the cache TTL).
func (h *Hub) TokenRevoked(ctx context.Context, hash string) error {
	h.forgetHash(hash)
	return h.publish(ctx, Event{Hash: hash})
}

// RevokeProvider raises providerID's epoch, applies it here and publishes
// it. It returns the new epoch, which is also the cut-off in unix
// milliseconds (server time). On an error wrapping token.ErrUnavailable
// nothing was revoked; on a publish error (the epoch was raised) the error
// is returned with the epoch: other replicas apply it within EpochPoll.
func (h *Hub) RevokeProvider(ctx context.Context, providerID string) (int64, error) {
	if providerID == "" {
		return 0, errors.New("revocation: empty provider id")
	}
	epoch, err := h.backend.RaiseEpoch(ctx, providerID)
	if err != nil {
		return 0, err
	}
	h.mergeEpochs(map[string]int64{providerID: epoch})
	h.flushAll()
	if err := h.publish(ctx, Event{ProviderID: providerID, Epoch: epoch}); err != nil {
		return epoch, err
	}
	return epoch, nil
}

func (h *Hub) publish(ctx context.Context, e Event) error {
	if err := h.backend.Publish(ctx, e); err != nil {
		h.log.Warn("could not publish an invalidation; other replicas apply it within the token cache TTL / epoch poll (1s)", "error", err.Error())
		return err
	}
	if h.metrics != nil {
		h.metrics.InvalidationPublished()
	}
	return nil
}

// Status is the hub's state for /readyz.
type Status struct {
	Backend       string `json:"backend"`
	Up            bool   `json:"subscription_up"`
	Since         string `json:"since"`
	LastError     string `json:"last_error,omitempty"`
	Received      int64  `json:"received"`
	ProviderEpoch int    `json:"provider_epochs"`
}

// Status reports the subscription's state.
func (h *Hub) Status() Status {
	s := Status{
		Backend:       h.backend.Kind(),
		Up:            h.up.Load(),
		Since:         time.Unix(0, h.since.Load()).UTC().Format(time.RFC3339Nano),
		Received:      h.received.Load(),
		ProviderEpoch: len(*h.epochsV.Load()),
	}
	if e := h.lastErr.Load(); e != nil && !s.Up {
		s.LastError = *e
	}
	return s
}

// Store wraps s so that Save stamps each record with its provider's
// current epoch (read from the backend: an error fails the save, closed)
// and Revoke publishes the revocation.
func (h *Hub) Store(s token.Store) token.Store { return &store{Store: s, h: h} }

var _ token.Issuer = (*store)(nil)

type store struct {
	token.Store
	h *Hub
}

func (s *store) Save(ctx context.Context, hash string, rec *token.Record, ttl time.Duration) error {
	if rec != nil {
		e, err := s.h.backend.Epoch(ctx, rec.ProviderID)
		if err != nil {
			return err
		}
		rec.Epoch = e
	}
	return s.Store.Save(ctx, hash, rec, ttl)
}

// Issue stamps the record with its provider's epoch in the store's own
// atomic step when both live in Redis (the store reads the epochs hash in
// the script that saves the record: one round trip, and no bulk
// revocation can fall between the read and the write); otherwise it reads
// the epoch first, as Save does.
func (s *store) Issue(ctx context.Context, iss token.Issuance) (token.IssueResult, error) {
	if iss.Record != nil {
		if rb, ok := s.h.backend.(*Redis); ok {
			// Only a Redis store reads EpochKey (and it is the backend's
			// Redis: NewRedis(store)).
			if rs, ok := s.Store.(*token.RedisStore); ok {
				iss.EpochKey = rb.epochs
				return rs.Issue(ctx, iss)
			}
		}
		e, err := s.h.backend.Epoch(ctx, iss.Record.ProviderID)
		if err != nil {
			return token.IssueResult{}, err
		}
		iss.Record.Epoch = e
	}
	return token.Issue(ctx, s.Store, iss)
}

func (s *store) Revoke(ctx context.Context, hash string) (bool, error) {
	existed, err := s.Store.Revoke(ctx, hash)
	if err == nil {
		_ = s.h.TokenRevoked(ctx, hash) // logged; the 1 s bound still holds
	} else {
		s.h.forgetHash(hash)
	}
	return existed, err
}

func encode(e Event) string {
	b, _ := json.Marshal(e)
	return string(b)
}

func decode(s string) (Event, error) {
	var e Event
	err := json.Unmarshal([]byte(s), &e)
	return e, err
}
