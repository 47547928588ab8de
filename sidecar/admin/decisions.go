package admin

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/policy"
)

// RecentDecisions is how many decisions are kept per provider.
const RecentDecisions = 50

// Decision is one exchange decision as the console shows it. It never
// holds a token: only what the audit event holds.
type Decision struct {
	Time       time.Time       `json:"time"`
	Outcome    string          `json:"outcome"`
	Reasons    []policy.Reason `json:"reasons"`
	ClientIP   string          `json:"client_ip"`
	Replica    string          `json:"replica"`
	DecisionID string          `json:"decision_id"`
	Subject    string          `json:"sub,omitempty"`
	Repository string          `json:"repository,omitempty"`
	Ref        string          `json:"ref,omitempty"`
	Message    string          `json:"message,omitempty"`
}

// Decisions keeps the last RecentDecisions decisions per provider.
type Decisions interface {
	Record(providerID string, d Decision)
	Recent(ctx context.Context, providerID string) ([]Decision, error) // newest first
}

// Ring keeps decisions in this process (the embedded store).
type Ring struct {
	mu sync.Mutex
	m  map[string][]Decision
}

// NewRing returns an empty in-process ring per provider.
func NewRing() *Ring { return &Ring{m: map[string][]Decision{}} }

// Record adds d, dropping the oldest beyond RecentDecisions.
func (r *Ring) Record(id string, d Decision) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := append(r.m[id], d)
	if len(l) > RecentDecisions {
		l = append([]Decision(nil), l[len(l)-RecentDecisions:]...)
	}
	r.m[id] = l
}

// Recent returns the provider's decisions, newest first.
func (r *Ring) Recent(_ context.Context, id string) ([]Decision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.m[id]
	out := make([]Decision, len(l))
	for i, d := range l {
		out[len(l)-1-i] = d
	}
	return out, nil
}

// RedisDecisions keeps decisions in one capped Redis stream per provider
// (<prefix>decisions:<id>, MAXLEN 50), so every replica sees every
// replica's decisions. Recording never blocks an exchange: writes go
// through a bounded queue and are dropped (and counted) when it is full.
type RedisDecisions struct {
	client  redis.UniversalClient
	prefix  string
	queue   chan redisEntry
	Dropped func() // called for a dropped decision (optional)
}

type redisEntry struct {
	id string
	d  Decision
}

// NewRedisDecisions starts the writer; it stops when ctx ends.
func NewRedisDecisions(ctx context.Context, c redis.UniversalClient, prefix string) *RedisDecisions {
	r := &RedisDecisions{client: c, prefix: prefix, queue: make(chan redisEntry, 1024)}
	go r.run(ctx)
	return r
}

func (r *RedisDecisions) key(id string) string { return r.prefix + "decisions:" + id }

// maxDecisionBatch bounds the XADDs the writer sends in one pipeline, and
// decisionLinger how long it waits for more after the first: the console
// shows a decision at most that much later, and a busy replica writes
// its decisions in one round trip per batch instead of one per exchange.
const (
	maxDecisionBatch = 64
	decisionLinger   = 10 * time.Millisecond
)

// run writes queued decisions in batches: the first waiting decision, then
// every decision that arrives within decisionLinger (up to
// maxDecisionBatch), in one pipeline (issue #17). In a Cluster go-redis
// splits the pipeline by node.
func (r *RedisDecisions) run(ctx context.Context) {
	batch := make([]redisEntry, 0, maxDecisionBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-r.queue:
			batch = append(batch[:0], e)
		}
		linger.Reset(decisionLinger)
	collect:
		for len(batch) < maxDecisionBatch {
			select {
			case e := <-r.queue:
				batch = append(batch, e)
			case <-linger.C:
				break collect
			case <-ctx.Done():
				break collect
			}
		}
		linger.Stop()
		r.write(ctx, batch)
	}
}

// write sends one XADD per entry in one pipeline, best effort: a failure
// loses these console entries, never an exchange's answer or its audit line.
func (r *RedisDecisions) write(ctx context.Context, batch []redisEntry) {
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, _ = r.client.Pipelined(wctx, func(p redis.Pipeliner) error {
		for _, e := range batch {
			b, _ := json.Marshal(e.d)
			p.XAdd(wctx, &redis.XAddArgs{Stream: r.key(e.id), MaxLen: RecentDecisions, Values: []any{"d", string(b)}})
		}
		return nil
	})
}

// Record queues d for the provider's stream.
func (r *RedisDecisions) Record(id string, d Decision) {
	select {
	case r.queue <- redisEntry{id, d}:
	default:
		if r.Dropped != nil {
			r.Dropped()
		}
	}
}

// Recent reads the provider's stream, newest first.
func (r *RedisDecisions) Recent(ctx context.Context, id string) ([]Decision, error) {
	msgs, err := r.client.XRevRangeN(ctx, r.key(id), "+", "-", RecentDecisions).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Decision, 0, len(msgs))
	for _, m := range msgs {
		s, _ := m.Values["d"].(string)
		var d Decision
		if json.Unmarshal([]byte(s), &d) == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// Tap returns a slog handler that passes every record to next and records
// the exchange audit events (event=exchange) of configured providers in
// ds. The audit event is the decision log: the console shows what the log
// has, and nothing the log does not (never a token).
func Tap(next slog.Handler, ds Decisions, replica string) slog.Handler {
	return &tap{next: next, ds: ds, replica: replica}
}

type tap struct {
	next    slog.Handler
	ds      Decisions
	replica string
}

func (t *tap) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (t *tap) Handle(ctx context.Context, rec slog.Record) error {
	// The exchange's audit record has the message "exchange"; every other
	// record (one per proxied request among them) passes straight through
	// without a walk over its attributes.
	if rec.Message != "exchange" {
		if t.next.Enabled(ctx, rec.Level) {
			return t.next.Handle(ctx, rec)
		}
		return nil
	}
	var ev, id, name string
	d := Decision{Time: rec.Time, Replica: t.replica}
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "event":
			ev = a.Value.String()
		case "provider_id":
			id = a.Value.String()
		case "provider_name":
			name = a.Value.String()
		case "outcome":
			d.Outcome = a.Value.String()
		case "decision_id":
			d.DecisionID = a.Value.String()
		case "client_ip":
			d.ClientIP = a.Value.String()
		case "sub":
			d.Subject = a.Value.String()
		case "repository":
			d.Repository = a.Value.String()
		case "ref":
			d.Ref = a.Value.String()
		case "message":
			d.Message = a.Value.String()
		case "reasons":
			if rs, ok := a.Value.Any().([]policy.Reason); ok {
				d.Reasons = rs
			}
		}
		return true
	})
	// Only configured providers (a name): random ids must not grow the map.
	if ev == "exchange" && id != "" && name != "" {
		t.ds.Record(id, d)
	}
	if t.next.Enabled(ctx, rec.Level) {
		return t.next.Handle(ctx, rec)
	}
	return nil
}

func (t *tap) WithAttrs(as []slog.Attr) slog.Handler {
	return &tap{next: t.next.WithAttrs(as), ds: t.ds, replica: t.replica}
}

func (t *tap) WithGroup(g string) slog.Handler {
	return &tap{next: t.next.WithGroup(g), ds: t.ds, replica: t.replica}
}
