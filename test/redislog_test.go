package test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRedisUnreachableLogsJSON: with Redis unreachable the sidecar starts,
// says so in a structured warning instead of a plain "serving", and
// go-redis's own messages come out as JSON log lines (component=redis), not
// as "redis: 2026/12/06 … pool.go:770: …" on stderr.
func TestRedisUnreachableLogsJSON(t *testing.T) {
	dir := t.TempDir()
	mainAddr, adminAddr, deadAddr := freeAddr(t), freeAddr(t), freeAddr(t) // nothing listens on deadAddr
	cfg := "listen: " + mainAddr + "\nadmin_listen: " + adminAddr + "\nupstream: {url: http://" + deadAddr + "}\n" +
		"providers: " + filepath.Join(dir, "providers.yaml") + "\nredis: {url: redis://" + deadAddr + "/0, timeout: 200ms}\n"
	data, err := os.ReadFile("../examples/providers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "providers.yaml"), string(data))
	writeFile(t, filepath.Join(dir, "sidecar.yaml"), cfg)
	logs := newLogSink()
	cmd := exec.Command(sidecarBin, "serve", "--config", filepath.Join(dir, "sidecar.yaml"))
	cmd.Env = sidecarEnv(nil)
	cmd.Stdout, cmd.Stderr = logs, logs
	setProcAttr(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	await(t, readyTimeout, "the start-up warning", func() bool {
		return len(logs.Lines(`"level":"WARN"`, "token store does not answer")) > 0
	})
	if len(logs.Lines(`"msg":"serving"`)) != 0 {
		t.Errorf("a plain serving line although Redis is down:\n%s", logs.String())
	}
	// A proxied request makes go-redis dial (and log) again.
	if st, _ := quickStatus("http://" + mainAddr + "/workspaces/my-company/projects"); st != http.StatusUnauthorized && st != http.StatusServiceUnavailable {
		t.Errorf("status %d", st)
	}
	await(t, awaitTimeout, "a go-redis message in the structured log", func() bool {
		return len(logs.Lines(`"component":"redis"`)) > 0
	})
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("a log line that is not JSON: %s", line)
		}
	}
}
