package admin

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/internal/redistest"
	"github.com/oidc-sidecar/oidc-sidecar/internal/testkit"
)

// TestRedisDecisionsBatched: decisions waiting in the queue go to Redis in
// pipelines of up to 64 XADDs (one round trip each), in order, and the
// stream keeps the newest 50.
func TestRedisDecisionsBatched(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	hook := &redistest.Counter{}
	client.AddHook(hook)
	r := &RedisDecisions{client: client, prefix: "t:", queue: make(chan redisEntry, 1024)}
	const n = 130
	for i := range n {
		r.Record("p1", Decision{Outcome: "issued", DecisionID: fmt.Sprintf("d%03d", i)})
	}
	before := hook.Cmds.Load()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	testkit.Await(t, 10*time.Second, "130 decisions written", func() bool { return hook.Pipelines.Load() == 3 })
	if c := hook.Cmds.Load() - before; c != 0 {
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
	hook := &redistest.Counter{}
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
	if p := hook.Pipelines.Load(); p < 1 || p > n/4 {
		t.Errorf("%d decisions recorded back to back took %d pipelines, want a few", n, p)
	}
}
