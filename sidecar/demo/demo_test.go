package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/glyph"
)

func TestDemoRunsEveryStep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	marks := glyph.Marks{OK: "✓", Fail: "✗"}
	if err := Run(ctx, Options{Out: &out, Marks: &marks}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{
		"✓ 200 and a token",
		"✓ 200 from the fake Buddy API",
		"Bearer <upstream credential>",
		"Insufficient scopes. Your token has the following scopes: [WORKSPACE, EXECUTION_INFO]. This request requires the following scopes: EXECUTION_RUN",
		`claim repository_owner = "evil-org"`,
		"already exchanged",
		"token expired at",
		"✓ all 6 steps behaved as printed",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "✗ expected") {
		t.Errorf("a step failed:\n%s", out.String())
	}
}

func TestDemoKeepRunningPrintsCommandsAndStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out safeBuffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Options{Out: &out, KeepRunning: true}) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "/_sidecar/oauth2/revoke") {
		if time.Now().After(deadline) {
			t.Fatalf("no curl commands printed:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "JWT='ey") || !strings.Contains(out.String(), "TOKEN=$(curl") {
		t.Fatalf("curl commands:\n%s", out.String())
	}
}
