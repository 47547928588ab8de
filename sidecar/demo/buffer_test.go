package demo

import "github.com/oidc-sidecar/oidc-sidecar/internal/testkit"

// safeBuffer is a goroutine-safe sink for the demo's output.
type safeBuffer = testkit.SyncBuffer
