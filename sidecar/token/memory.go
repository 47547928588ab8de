package token

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Memory store defaults.
const (
	DefaultMemoryMaxEntries = 100_000
	DefaultJanitorInterval  = time.Minute
)

// ErrMemoryFull is returned (wrapped) when the memory store holds its maximum
// number of live entries. It wraps ErrUnavailable, so callers fail closed (503).
var ErrMemoryFull = fmt.Errorf("%w: memory store full", ErrUnavailable)

// errMemoryClosed is returned by every operation after Close.
var errMemoryClosed = fmt.Errorf("%w: memory store closed", ErrUnavailable)

// MemoryOption configures NewMemory.
type MemoryOption func(*MemoryStore)

// WithMaxEntries caps the number of entries (tokens, claims and rate-limit
// counters together); default DefaultMemoryMaxEntries. n < 1 keeps the default.
func WithMaxEntries(n int) MemoryOption {
	return func(m *MemoryStore) {
		if n >= 1 {
			m.maxEntries = n
		}
	}
}

// WithJanitorInterval sets how often the background janitor removes expired
// entries; default DefaultJanitorInterval. d <= 0 keeps the default.
func WithJanitorInterval(d time.Duration) MemoryOption {
	return func(m *MemoryStore) {
		if d > 0 {
			m.janitorEvery = d
		}
	}
}

// MemoryStore is an in-process Store for a single sidecar instance (development,
// demos, tests). Expiry is honoured on every read using the injected clock; a
// janitor goroutine deletes expired entries in the background until Close.
// The number of entries is capped (WithMaxEntries). Safe for concurrent use.
//
// Records are kept as the same JSON as in Redis, so both stores return fresh
// copies and keep nil and empty slices distinct in the same way.
type MemoryStore struct {
	now          func() time.Time
	maxEntries   int
	janitorEvery time.Duration

	mu        sync.Mutex
	entries   map[string]memEntry
	closed    bool
	lastSweep time.Time

	stop chan struct{}
	done chan struct{}
}

type memEntry struct {
	val     []byte // tok: JSON record; once: the claim's owner
	count   int64  // rl: counter
	expires time.Time
}

var (
	_ Store  = (*MemoryStore)(nil)
	_ Issuer = (*MemoryStore)(nil)
)

// NewMemory returns a MemoryStore using now as its clock (nil means time.Now)
// and starts its janitor; call Close to stop it.
func NewMemory(now func() time.Time, opts ...MemoryOption) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	m := &MemoryStore{
		now:          now,
		maxEntries:   DefaultMemoryMaxEntries,
		janitorEvery: DefaultJanitorInterval,
		entries:      make(map[string]memEntry),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
	}
	for _, o := range opts {
		o(m)
	}
	go m.janitor()
	return m
}

func (m *MemoryStore) janitor() {
	defer close(m.done)
	t := time.NewTicker(m.janitorEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.mu.Lock()
			m.sweepLocked(m.now())
			m.mu.Unlock()
		}
	}
}

// sweepLocked deletes expired entries. m.mu must be held.
func (m *MemoryStore) sweepLocked(now time.Time) {
	m.lastSweep = now
	for k, e := range m.entries {
		if !now.Before(e.expires) {
			delete(m.entries, k)
		}
	}
}

// getLocked returns the live entry for key, deleting it if it has expired.
func (m *MemoryStore) getLocked(key string, now time.Time) (memEntry, bool) {
	e, ok := m.entries[key]
	if !ok {
		return memEntry{}, false
	}
	if !now.Before(e.expires) {
		delete(m.entries, key)
		return memEntry{}, false
	}
	return e, true
}

// roomLocked reports an error when key is new and the store is full.
func (m *MemoryStore) roomLocked(key string, now time.Time) error {
	if _, ok := m.entries[key]; ok {
		return nil
	}
	return m.roomForLocked(1, now)
}

// roomForLocked reports an error when n new entries do not fit. Expired
// entries are swept first, at most once per second of store time, so a full
// store under load does not turn every insert into a full scan.
func (m *MemoryStore) roomForLocked(n int, now time.Time) error {
	if len(m.entries)+n <= m.maxEntries {
		return nil
	}
	if now.Sub(m.lastSweep) >= time.Second || now.Before(m.lastSweep) {
		m.sweepLocked(now)
		if len(m.entries)+n <= m.maxEntries {
			return nil
		}
	}
	return fmt.Errorf("%w: %d entries (limit %d); raise the limit or use Redis", ErrMemoryFull, len(m.entries), m.maxEntries)
}

// lock takes m.mu and fails if the store is closed.
func (m *MemoryStore) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errMemoryClosed
	}
	return nil
}

// Len returns the number of entries held, including expired ones not yet swept.
func (m *MemoryStore) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.entries)
}

// Kind returns "memory".
func (m *MemoryStore) Kind() string { return "memory" }

// Ping returns nil unless the store is closed.
func (m *MemoryStore) Ping(ctx context.Context) error {
	if err := m.lock(); err != nil {
		return err
	}
	m.mu.Unlock()
	return nil
}

// Close stops the janitor and drops all entries. It is safe to call more than once.
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.entries = nil
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	return nil
}

// Save stores rec under the hash until now+ttl.
func (m *MemoryStore) Save(ctx context.Context, hash string, rec *Record, ttl time.Duration) error {
	if err := checkSave(hash, rec, ttl); err != nil {
		return err
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("token: encoding record: %w", err)
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	now := m.now()
	key := tokKeyPart + hash
	if err := m.roomLocked(key, now); err != nil {
		return err
	}
	m.entries[key] = memEntry{val: val, expires: now.Add(ttl)}
	return nil
}

// Get returns a fresh copy of the record, or ErrNotFound.
func (m *MemoryStore) Get(ctx context.Context, hash string) (*Record, error) {
	if !validHash(hash) {
		return nil, ErrNotFound
	}
	if err := m.lock(); err != nil {
		return nil, err
	}
	now := m.now()
	e, ok := m.getLocked(tokKeyPart+hash, now)
	m.mu.Unlock()
	if !ok {
		return nil, ErrNotFound
	}
	return decodeRecord(e.val, now)
}

// Revoke deletes the token; it reports whether a live token existed.
func (m *MemoryStore) Revoke(ctx context.Context, hash string) (bool, error) {
	if !validHash(hash) {
		return false, nil
	}
	if err := m.lock(); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	key := tokKeyPart + hash
	_, ok := m.getLocked(key, m.now())
	delete(m.entries, key)
	return ok, nil
}

// ClaimOnce records owner under key until now+ttl; true when no live claim
// existed or the live claim is owner's own.
func (m *MemoryStore) ClaimOnce(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkKey("ClaimOnce", key); err != nil {
		return false, err
	}
	if err := checkOwner("ClaimOnce", owner); err != nil {
		return false, err
	}
	if err := checkTTL("ClaimOnce", ttl); err != nil {
		return false, err
	}
	if err := m.lock(); err != nil {
		return false, err
	}
	defer m.mu.Unlock()
	now := m.now()
	k := onceKeyPart + key
	if e, ok := m.getLocked(k, now); ok {
		return string(e.val) == owner, nil
	}
	if err := m.roomLocked(k, now); err != nil {
		return false, err
	}
	m.entries[k] = memEntry{val: []byte(owner), expires: now.Add(ttl)}
	return true, nil
}

// Unclaim removes a claim if owner holds it.
func (m *MemoryStore) Unclaim(ctx context.Context, key, owner string) error {
	if err := checkKey("Unclaim", key); err != nil {
		return err
	}
	if err := checkOwner("Unclaim", owner); err != nil {
		return err
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	k := onceKeyPart + key
	if e, ok := m.getLocked(k, m.now()); ok && string(e.val) == owner {
		delete(m.entries, k)
	}
	return nil
}

// Allow counts one hit against each limit's current window, atomically for the
// whole call. If the store is full, no counter is changed.
func (m *MemoryStore) Allow(ctx context.Context, limits ...Limit) ([]LimitResult, error) {
	if len(limits) == 0 {
		return nil, nil
	}
	if err := checkLimits(limits); err != nil {
		return nil, err
	}
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	return m.allowLocked(limits, m.now())
}

func (m *MemoryStore) allowLocked(limits []Limit, now time.Time) ([]LimitResult, error) {
	keys := make([]string, len(limits))
	lefts := make([]time.Duration, len(limits))
	added := 0
	for i, l := range limits {
		idx, left := window(now, l.Window)
		keys[i] = rlKeyPart + l.Key + ":" + strconv.FormatInt(idx, 10)
		lefts[i] = left
		if _, ok := m.getLocked(keys[i], now); !ok {
			added++
		}
	}
	if err := m.roomForLocked(added, now); err != nil {
		return nil, err
	}
	res := make([]LimitResult, len(limits))
	for i, l := range limits {
		e, ok := m.entries[keys[i]]
		if !ok {
			e = memEntry{expires: now.Add(l.Window)}
		}
		e.count++
		m.entries[keys[i]] = e
		res[i] = limitResult(l, e.count, lefts[i])
	}
	return res, nil
}

// Issue applies iss under one lock: the limits, the claim and the record
// change together or (store full, limit exhausted, replay) not at all
// beyond the counters. Record.Epoch is stored as the caller set it
// (EpochKey is a Redis key and is ignored here).
func (m *MemoryStore) Issue(ctx context.Context, iss Issuance) (IssueResult, error) {
	if err := checkIssuance(iss); err != nil {
		return IssueResult{}, err
	}
	val, err := encodeRecord(iss.Record)
	if err != nil {
		return IssueResult{}, err
	}
	if err := m.lock(); err != nil {
		return IssueResult{}, err
	}
	defer m.mu.Unlock()
	now := m.now()
	var res IssueResult
	if len(iss.Limits) > 0 {
		if res.Limits, err = m.allowLocked(iss.Limits, now); err != nil {
			return res, err
		}
		if res.Limited = anyLimited(res.Limits); res.Limited {
			return res, nil
		}
	}
	tk := tokKeyPart + iss.Hash
	if iss.ClaimKey == "" {
		if err := m.roomLocked(tk, now); err != nil {
			return res, err
		}
		m.entries[tk] = memEntry{val: val, expires: now.Add(iss.TTL)}
		return res, nil
	}
	ck := onceKeyPart + iss.ClaimKey
	if e, ok := m.getLocked(ck, now); ok {
		if string(e.val) != iss.ClaimOwner {
			res.Replayed = true
			return res, nil
		}
	} else {
		// Room for the claim and the record together, or neither.
		n := 1
		if _, ok := m.getLocked(tk, now); !ok {
			n++
		}
		if err := m.roomForLocked(n, now); err != nil {
			return res, err
		}
		m.entries[ck] = memEntry{val: []byte(iss.ClaimOwner), expires: now.Add(iss.ClaimTTL)}
	}
	if err := m.roomLocked(tk, now); err != nil {
		return res, err
	}
	m.entries[tk] = memEntry{val: val, expires: now.Add(iss.TTL)}
	return res, nil
}
