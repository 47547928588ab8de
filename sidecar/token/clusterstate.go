package token

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// clusterRefresh makes a ClusterClient reload its slot map as soon as a
// command fails on a connection error. go-redis reloads the map on MOVED
// and ASK answers only; after a primary dies, the commands for its slots
// fail with "connection refused" and never see a MOVED, so a replica's map
// could keep naming the dead primary until some other command happened to
// be redirected. ReloadState is asynchronous and go-redis runs one reload
// at a time, so a burst of failures costs one CLUSTER SLOTS.
type clusterRefresh struct{ c *redis.ClusterClient }

func (h clusterRefresh) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h clusterRefresh) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(err)
		return err
	}
}

func (h clusterRefresh) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(err)
		return err
	}
}

func (h clusterRefresh) check(err error) {
	if connectionError(err) {
		h.c.ReloadState(context.Background())
	}
}

// connectionError reports whether err says the node could not be reached
// or dropped the connection (not a Redis error reply, not a timeout of a
// slow but live node, not this request's own cancellation).
func connectionError(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
