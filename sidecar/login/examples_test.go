package login

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// cliFlags are the flags of `oidc-sidecar login` (cmd/oidc-sidecar).
var cliFlags = []string{"--sidecar-url", "--provider-id", "--audience", "--source", "--format", "--export", "--env-name"}

var flagRE = regexp.MustCompile(`--[a-z][a-z-]*`)

// loginFlags returns the flags of the first `oidc-sidecar login` command
// in script (line continuations joined), or nil if there is none.
func loginFlags(script string) []string {
	script = strings.ReplaceAll(script, "\\\n", " ")
	i := strings.Index(script, "oidc-sidecar login")
	if i < 0 {
		return nil
	}
	line, _, _ := strings.Cut(script[i:], "\n")
	line, _, _ = strings.Cut(line, ")") // end of $(...)
	return append([]string{}, flagRE.FindAllString(line, -1)...)
}

func checkFlags(t *testing.T, where string, flags []string, required ...string) {
	t.Helper()
	for _, f := range flags {
		if !slices.Contains(cliFlags, f) {
			t.Errorf("%s: login uses %s, which the CLI does not have", where, f)
		}
	}
	for _, f := range required {
		if !slices.Contains(flags, f) {
			t.Errorf("%s: login does not pass %s (flags %v)", where, f, flags)
		}
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestGitHubActionsExample(t *testing.T) {
	const path = "../../examples/github-actions.yml"
	type step struct {
		Name string            `yaml:"name"`
		Uses string            `yaml:"uses"`
		Run  string            `yaml:"run"`
		With map[string]string `yaml:"with"`
	}
	var wf struct {
		Permissions map[string]string `yaml:"permissions"`
		Jobs        map[string]struct {
			RunsOn      string            `yaml:"runs-on"`
			Permissions map[string]string `yaml:"permissions"`
			Env         map[string]string `yaml:"env"`
			Steps       []step            `yaml:"steps"`
		} `yaml:"jobs"`
	}
	readYAML(t, path, &wf)
	found := false
	for name, job := range wf.Jobs {
		login := -1
		for i, s := range job.Steps {
			if strings.Contains(s.Run, "oidc-sidecar login") {
				login = i
			}
		}
		if login < 0 {
			continue
		}
		found = true
		perms := job.Permissions
		if perms == nil {
			perms = wf.Permissions
		}
		if perms["id-token"] != "write" || perms["contents"] != "read" {
			t.Errorf("job %s: permissions %v, want id-token: write and contents: read", name, perms)
		}
		checkFlags(t, path+" job "+name, loginFlags(job.Steps[login].Run), "--provider-id", "--sidecar-url")
		var calls []string
		for _, s := range job.Steps[login+1:] {
			if strings.Contains(s.Run, `Authorization: Bearer $BUDDY_TOKEN`) {
				calls = append(calls, s.Run)
			}
		}
		all := strings.Join(calls, "\n")
		for _, want := range []string{`"$BUDDY_API_ENDPOINT/workspaces/$BUDDY_WORKSPACE"`, `/workspaces/$BUDDY_WORKSPACE/projects"`} {
			if !strings.Contains(all, want) {
				t.Errorf("job %s: no API call %s with $BUDDY_TOKEN after the login step", name, want)
			}
		}
		for i, s := range job.Steps[:login] {
			if strings.Contains(s.Run, "$BUDDY_TOKEN") {
				t.Errorf("job %s: step %d uses $BUDDY_TOKEN before the login step", name, i)
			}
		}
		// $GITHUB_ENV only reaches the following steps.
		if strings.Contains(job.Steps[login].Run, "$BUDDY_TOKEN") {
			t.Errorf("job %s: the login step itself uses $BUDDY_TOKEN, which is set only for the following steps", name)
		}
	}
	if !found {
		t.Fatalf("%s: no job runs oidc-sidecar login", path)
	}
}

// TestCircleCIExample: the CircleCI example follows Buddy's own pattern
// (curl posts $CIRCLE_OIDC_TOKEN_V2, falling back to $CIRCLE_OIDC_TOKEN, to
// /user/oidc/tokens; the answer is the bearer token of the next command).
// test/clients_test.go runs its commands against a sidecar.
func TestCircleCIExample(t *testing.T) {
	const path = "../../examples/circleci.yml"
	var cfg struct {
		Version any `yaml:"version"`
		Jobs    map[string]struct {
			Docker []struct {
				Image string `yaml:"image"`
			} `yaml:"docker"`
			Steps []any `yaml:"steps"`
		} `yaml:"jobs"`
		Workflows map[string]struct {
			Jobs []any `yaml:"jobs"`
		} `yaml:"workflows"`
	}
	readYAML(t, path, &cfg)
	if v := fmt.Sprint(cfg.Version); v != "2.1" {
		t.Errorf("version %s, want 2.1", v)
	}
	found := false
	for name, job := range cfg.Jobs {
		var script strings.Builder
		for _, s := range job.Steps {
			m, ok := s.(map[string]any)
			if !ok {
				continue
			}
			switch run := m["run"].(type) {
			case string:
				script.WriteString(run + "\n")
			case map[string]any:
				c, _ := run["command"].(string)
				script.WriteString(c + "\n")
			}
		}
		text := script.String()
		i := strings.Index(text, "/user/oidc/tokens")
		if i < 0 {
			continue
		}
		found = true
		if len(job.Docker) == 0 || job.Docker[0].Image != "cimg/base:current" {
			t.Errorf("job %s: image %v, want cimg/base:current", name, job.Docker)
		}
		for _, want := range []string{"set -euo pipefail", "BUDDY_TOKEN=$(curl", `${CIRCLE_OIDC_TOKEN_V2:-$CIRCLE_OIDC_TOKEN}`, "--fail-with-body"} {
			if !strings.Contains(text, want) {
				t.Errorf("job %s: the exchange step lacks %s", name, want)
			}
		}
		if !strings.Contains(text[i:], `Authorization: Bearer $BUDDY_TOKEN`) {
			t.Errorf("job %s: no API call with $BUDDY_TOKEN after the exchange", name)
		}
	}
	if !found {
		t.Fatalf("%s: no job posts to /user/oidc/tokens", path)
	}
	if len(cfg.Workflows) == 0 {
		t.Errorf("%s: no workflow runs the job", path)
	}
}
