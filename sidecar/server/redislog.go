package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// go-redis logs through one process-wide logger (by default plain text on
// stderr, "redis: 2026/12/06 … pool.go:770: …"). redisLogs routes it to
// the structured log of the server that configured Redis last, as warnings
// with component=redis, so every line the sidecar prints is JSON.
var redisLogs struct {
	once   sync.Once
	target atomic.Pointer[slog.Logger]
}

type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	l := redisLogs.target.Load()
	if l == nil {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	l.Warn(strings.TrimPrefix(msg, "redis: "), "component", "redis")
}

// routeRedisLogs sends go-redis's log lines to l.
func routeRedisLogs(l *slog.Logger) {
	redisLogs.target.Store(l)
	redisLogs.once.Do(func() { redis.SetLogger(redisLogger{}) })
}
