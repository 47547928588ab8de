package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestReleaseMachinery: the release workflow builds what the install
// instructions download — linux/darwin × amd64/arm64 binaries named
// oidc-sidecar-<os>-<arch> with SHA256SUMS, and the image — through `make
// release-binaries` (which .ci/run runs for one target).
func TestReleaseMachinery(t *testing.T) {
	var wf struct {
		On struct {
			Push struct {
				Tags []string `yaml:"tags"`
			} `yaml:"push"`
		} `yaml:"on"`
		Jobs map[string]struct {
			Steps []struct {
				Uses string            `yaml:"uses"`
				Run  string            `yaml:"run"`
				With map[string]string `yaml:"with"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	readYAML(t, "../.github/workflows/release.yml", &wf)
	if len(wf.On.Push.Tags) != 1 || wf.On.Push.Tags[0] != "v*" {
		t.Errorf("the release must run on v* tags: %v", wf.On.Push.Tags)
	}
	var runs, tags, platforms string
	for _, j := range wf.Jobs {
		for _, s := range j.Steps {
			runs += s.Run + "\n"
			if strings.HasPrefix(s.Uses, "docker/build-push-action") {
				tags, platforms = s.With["tags"], s.With["platforms"]
				if s.With["push"] != "true" {
					t.Error("the image is not pushed")
				}
			}
		}
	}
	for _, want := range []string{".ci/run", `make release-binaries VERSION="$GITHUB_REF_NAME"`, "sha256sum --check SHA256SUMS", "gh release create", "dist/*"} {
		if !strings.Contains(runs, want) {
			t.Errorf("release.yml does not run %q", want)
		}
	}
	makefile := readFile(t, "../Makefile")
	image := regexp.MustCompile(`(?m)^IMAGE \?= (\S+)$`).FindStringSubmatch(makefile)
	targets := regexp.MustCompile(`(?m)^TARGETS \?= (.+)$`).FindStringSubmatch(makefile)
	if image == nil || targets == nil {
		t.Fatal("the Makefile lost IMAGE or TARGETS")
	}
	if targets[1] != "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64" {
		t.Errorf("TARGETS %q", targets[1])
	}
	if platforms != "linux/amd64,linux/arm64" || !strings.Contains(tags, image[1]+":${{ github.ref_name }}") {
		t.Errorf("image platforms %q, tags %q (want %s)", platforms, tags, image[1])
	}
	ci := readFile(t, "../.ci/run")
	if !strings.Contains(ci, "make release-binaries TARGETS=linux/amd64") || !strings.Contains(ci, "sha256sum --check SHA256SUMS") {
		t.Error(".ci/run does not build and check one release target")
	}
}

// TestInstallInstructionsAgree: every install instruction in the docs,
// examples and deployment files names the module of go.mod, the image the
// release pushes, and asset names the release builds.
func TestInstallInstructionsAgree(t *testing.T) {
	module := regexp.MustCompile(`(?m)^module (\S+)$`).FindStringSubmatch(readFile(t, "../go.mod"))[1]
	repo := strings.TrimPrefix(module, "github.com/")
	image := regexp.MustCompile(`(?m)^IMAGE \?= (\S+)$`).FindStringSubmatch(readFile(t, "../Makefile"))[1]
	if image != "ghcr.io/"+repo {
		t.Errorf("image %s is not ghcr.io/%s", image, repo)
	}
	var files []string
	for _, g := range []string{"../README.md", "../docs/*.md", "../examples/*", "../deploy/*/*", "../Dockerfile", "../docker-compose.yml", "../.github/workflows/*", "../bundles/*/README.md"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	goInstall := regexp.MustCompile(`go install (\S+)@`)
	releases := regexp.MustCompile(`github\.com/([\w.-]+/[\w.-]+)/releases/(?:latest/download|download/[^/\s"]+)/([\w.$-]+)`)
	images := regexp.MustCompile(`ghcr\.io/[\w.-]+/oidc-sidecar[\w.-]*`)
	asset := regexp.MustCompile(`^oidc-sidecar-(linux|darwin|\$os|\$\{os\})-(amd64|arm64|\$arch|\$\{arch\})$`)
	seen := map[string]int{}
	for _, f := range files {
		data := readFile(t, f)
		for _, m := range goInstall.FindAllStringSubmatch(data, -1) {
			seen["go install"]++
			if m[1] != module+"/cmd/oidc-sidecar" {
				t.Errorf("%s: go install %s, want %s/cmd/oidc-sidecar", f, m[1], module)
			}
		}
		for _, m := range releases.FindAllStringSubmatch(data, -1) {
			seen["release"]++
			if m[1] != repo {
				t.Errorf("%s: downloads from %s, not %s", f, m[1], repo)
			}
			if m[2] != "SHA256SUMS" && !asset.MatchString(m[2]) {
				t.Errorf("%s: %s is not an asset the release builds (oidc-sidecar-<linux|darwin>-<amd64|arm64>, SHA256SUMS)", f, m[2])
			}
		}
		for _, m := range images.FindAllString(data, -1) {
			seen["image"]++
			if m != image {
				t.Errorf("%s: image %s, want %s", f, m, image)
			}
		}
	}
	if seen["go install"] == 0 || seen["release"] < 2 || seen["image"] == 0 {
		t.Fatalf("found %v; the scan no longer sees the instructions", seen)
	}
	// The GitHub Actions example verifies what it downloads.
	gha := readFile(t, "../examples/github-actions.yml")
	if !strings.Contains(gha, "SHA256SUMS") || !strings.Contains(gha, "sha256sum --check") {
		t.Error("examples/github-actions.yml installs a binary without checking it against SHA256SUMS")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
