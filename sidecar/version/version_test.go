package version

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestFrom(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.0",
		Main:      debug.Module{Path: "github.com/oidc-sidecar/oidc-sidecar", Version: "v0.0.0-20261206114000-3f2a9c1d7e4b+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3f2a9c1d7e4b5a6f7081920a1b2c3d4e5f607182"},
			{Key: "vcs.time", Value: "2026-12-06T11:40:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	// Not stamped: the module version and the VCS settings.
	i := From("dev", bi)
	if i.Version != bi.Main.Version || i.Revision != "3f2a9c1d7e4b5a6f7081920a1b2c3d4e5f607182" || !i.Modified || i.Time != "2026-12-06T11:40:00Z" || i.GoVersion != "go1.26.0" {
		t.Fatalf("%+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, bi.Main.Version+" (commit 3f2a9c1d7e4b, modified; go1.26.0 ") {
		t.Fatalf("%s", s)
	}
	// Stamped by the release: the stamp wins, the revision is still shown.
	if i := From("v1.2.0", bi); i.Version != "v1.2.0" || i.Revision == "" {
		t.Fatalf("%+v", i)
	}
	// go install ...@v1.2.0: a tagged module version, no VCS settings.
	if i := From("dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.0"}}); i.Version != "v1.2.0" || i.Revision != "" {
		t.Fatalf("%+v", i)
	}
	// go run / a test binary: (devel) is no version.
	if i := From("dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}); i.Version != "dev" {
		t.Fatalf("%+v", i)
	}
	if i := From("", nil); i.Version != "dev" || i.Platform == "" {
		t.Fatalf("%+v", i)
	}
}
