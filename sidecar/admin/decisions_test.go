package admin

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

type pipelineCounter struct{ cmds, pipelines atomic.Int32 }

func (h *pipelineCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *pipelineCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" { // a new connection's handshake
			h.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *pipelineCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.pipelines.Add(1); return next(ctx, cmds) }
}

// TestRedisDecisionsBatched: decisions waiting in the queue go to Redis in
// pipelines of up to 64 XADDs (one round trip each), in order, and the
// stream keeps the newest 50.
func TestRedisDecisionsBatched(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	hook := &pipelineCounter{}
	client.AddHook(hook)
	r := &RedisDecisions{client: client, prefix: "t:", queue: make(chan redisEntry, 1024)}
	const n = 130
	for i := range n {
		r.Record("p1", Decision{Outcome: "issued", DecisionID: fmt.Sprintf("d%03d", i)})
	}
	before := hook.cmds.Load()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	testkit.Await(t, 10*time.Second, "130 decisions written", func() bool { return hook.pipelines.Load() == 3 })
	if c := hook.cmds.Load() - before; c != 0 {
		t.Errorf("%d single commands, want only pipelines", c)
	}
	got, err := r.Recent(context.Background(), "p1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != RecentDecisions || got[0].DecisionID != "d129" || got[len(got)-1].DecisionID != "d080" {
		t.Fatalf("Recent: %d decisions, first %+v", len(got), got[0])
	}
}

// TestRedisDecisionsLinger: decisions recorded one after the other while
// the writer runs share pipelines (it waits briefly for more after the
// first), so a replica under load does not pay one round trip per
// exchange for the console.
func TestRedisDecisionsLinger(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	hook := &pipelineCounter{}
	client.AddHook(hook)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := NewRedisDecisions(ctx, client, "l:")
	const n = 20
	for i := range n {
		r.Record("p1", Decision{Outcome: "issued", DecisionID: fmt.Sprintf("d%03d", i)})
	}
	testkit.Await(t, 10*time.Second, "20 decisions written", func() bool {
		got, err := r.Recent(context.Background(), "p1")
		return err == nil && len(got) == n
	})
	if p := hook.pipelines.Load(); p < 1 || p > n/4 {
		t.Errorf("%d decisions recorded back to back took %d pipelines, want a few", n, p)
	}
}
