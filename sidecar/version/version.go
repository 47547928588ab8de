// Package version says which build of oidc-sidecar is running: the version
// stamped at build time (-ldflags "-X main.version=v1.2.3", as the release
// and the Dockerfile do) or, without one, what the Go toolchain recorded —
// the module version (a tag for `go install ...@v1.2.3`, a pseudo-version
// for a build from a clone), the VCS revision and whether the tree had
// uncommitted changes.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is the build's identity; `oidc-sidecar version --json` prints it.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"` // the VCS commit
	Time      string `json:"time,omitempty"`     // the commit's time, RFC 3339
	Modified  bool   `json:"modified"`           // built from a tree with uncommitted changes
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// Get returns the running binary's Info; stamped is main.version ("dev"
// when the build did not set it).
func Get(stamped string) Info {
	bi, _ := debug.ReadBuildInfo()
	return From(stamped, bi)
}

// From is Get with the build info given (nil when unavailable).
func From(stamped string, bi *debug.BuildInfo) Info {
	info := Info{Version: stamped, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		if info.Version == "" {
			info.Version = "dev"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	if info.Version == "" || info.Version == "dev" {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			info.Version = v
		} else {
			info.Version = "dev"
		}
	}
	return info
}

// String is the one line --version prints, e.g.
// "v1.2.0 (commit 3f2a9c1d7e4b, modified; go1.26.0 linux/amd64)".
func (i Info) String() string {
	var parts []string
	if i.Revision != "" {
		r := i.Revision
		if len(r) > 12 {
			r = r[:12]
		}
		c := "commit " + r
		if i.Modified {
			c += ", modified"
		}
		parts = append(parts, c)
	}
	parts = append(parts, i.GoVersion+" "+i.Platform)
	return i.Version + " (" + strings.Join(parts, "; ") + ")"
}
