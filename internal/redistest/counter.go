package redistest

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Counter is a go-redis hook counting what a client sends: single commands
// and pipelines (a pipeline is one round trip per node). A new connection's
// handshake (HELLO) is not counted. Add it with client.AddHook.
type Counter struct{ Cmds, Pipelines atomic.Int32 }

// RoundTrips is Cmds + Pipelines.
func (c *Counter) RoundTrips() int32 { return c.Cmds.Load() + c.Pipelines.Load() }

func (c *Counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "hello" {
			c.Cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.Pipelines.Add(1)
		return next(ctx, cmds)
	}
}
