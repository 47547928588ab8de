package login

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestFormats(t *testing.T) {
	sc := newSidecar(t, okJSONString)
	run := func(format, envName string) string {
		t.Helper()
		h := newRig(tokenEnv())
		o := h.options(sc.URL + "/")
		o.Format, o.EnvName = format, envName
		if e := h.run(t, context.Background(), o); e != nil {
			t.Fatal(e)
		}
		return h.stdout.String()
	}
	if got := run("", ""); got != issued+"\n" {
		t.Errorf("token: %q", got)
	}
	if got, want := run("env", ""), "BUDDY_TOKEN='"+issued+"'\nBUDDY_API_ENDPOINT='"+sc.URL+"'\n"; got != want {
		t.Errorf("env: %q, want %q", got, want)
	}
	if got, want := run("env", "MY_TOKEN"), "MY_TOKEN='"+issued+"'\nBUDDY_API_ENDPOINT='"+sc.URL+"'\n"; got != want {
		t.Errorf("env with --env-name: %q, want %q", got, want)
	}
	var v map[string]string
	out := run("json", "")
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 2 || v["token"] != issued || v["api_endpoint"] != sc.URL {
		t.Errorf("json: %q (%v)", out, err)
	}
}

// TestEnvFormatIsShellSafe evaluates the env output in sh, with an
// endpoint that needs quoting.
func TestEnvFormatIsShellSafe(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	sc := newSidecar(t, okJSONString)
	h := newRig(tokenEnv())
	o := h.options(sc.URL)
	o.Format = "env"
	if e := h.run(t, context.Background(), o); e != nil {
		t.Fatal(e)
	}
	// The same lines with an endpoint full of shell metacharacters.
	hostile := "http://127.0.0.1/a'b\"$(touch pwned)`x`;c"
	out := h.stdout.String() + "BUDDY_API_ENDPOINT=" + shellQuote(hostile) + "\n"
	dir := t.TempDir()
	cmd := exec.Command(sh, "-c", `eval "$OUT"; printf '%s\n%s' "$BUDDY_TOKEN" "$BUDDY_API_ENDPOINT"`)
	cmd.Env = []string{"OUT=" + out}
	cmd.Dir = dir
	got, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := issued + "\n" + hostile; string(got) != want {
		t.Fatalf("sh saw %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
		t.Fatal("the quoting let a command run")
	}
}

var delimRE = regexp.MustCompile(`^ghadelim_[A-Z2-7]{26}$`)

// parseGitHubEnv reads $GITHUB_ENV entries the way the runner does and
// returns names, values and delimiters in order.
func parseGitHubEnv(t *testing.T, text string) (names, values, delims []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		name, delim, ok := strings.Cut(lines[i], "<<")
		if !ok {
			t.Fatalf("line %d %q is not in the NAME<<DELIMITER form", i+1, lines[i])
		}
		var value []string
		for i++; i < len(lines) && lines[i] != delim; i++ {
			value = append(value, lines[i])
		}
		if i == len(lines) {
			t.Fatalf("delimiter %q never closes", delim)
		}
		names, values, delims = append(names, name), append(values, strings.Join(value, "\n")), append(delims, delim)
	}
	return names, values, delims
}

func TestGitHubExport(t *testing.T) {
	gh, _, _ := fakeGitHub(t, nil)
	sc := newSidecar(t, okJSONString)
	seen := map[string]bool{}
	for i, tc := range []struct {
		export, format, envName, wantName string
	}{
		{"auto", "token", "", "BUDDY_TOKEN"},
		{"github", "json", "MY_TOKEN", "MY_TOKEN"},
	} {
		envFile := filepath.Join(t.TempDir(), "github_env")
		const before = "EARLIER=1\n"
		if err := os.WriteFile(envFile, []byte(before), 0o600); err != nil {
			t.Fatal(err)
		}
		env := githubEnv(gh)
		env["GITHUB_ENV"] = envFile
		h := newRig(env)
		o := h.options(sc.URL)
		o.Source, o.Export, o.Format, o.EnvName = "auto", tc.export, tc.format, tc.envName
		if e := h.run(t, context.Background(), o); e != nil {
			t.Fatal(e)
		}
		// Stdout: the mask command and nothing else.
		if got := h.stdout.String(); got != "::add-mask::"+issued+"\n" {
			t.Fatalf("%d: stdout %q, want only the ::add-mask:: line", i, got)
		}
		data, err := os.ReadFile(envFile)
		if err != nil {
			t.Fatal(err)
		}
		text, ok := strings.CutPrefix(string(data), before)
		if !ok {
			t.Fatalf("earlier content lost: %q", data)
		}
		names, values, delims := parseGitHubEnv(t, text)
		if !slices.Equal(names, []string{tc.wantName, "BUDDY_API_ENDPOINT"}) || !slices.Equal(values, []string{issued, sc.URL}) {
			t.Fatalf("GITHUB_ENV entries %q = %q", names, values)
		}
		for _, d := range delims {
			if !delimRE.MatchString(d) || seen[d] {
				t.Fatalf("delimiter %q is not fresh and random", d)
			}
			seen[d] = true
		}
		if !strings.Contains(h.stderr.String(), tc.wantName+" and BUDDY_API_ENDPOINT are set for the following steps") {
			t.Fatalf("stderr %q", h.stderr.String())
		}
		if tc.format != "token" && !strings.Contains(h.stderr.String(), "--format json is ignored") {
			t.Fatalf("stderr %q", h.stderr.String())
		}
	}
}

func TestGitHubEnvEntryCannotInject(t *testing.T) {
	// A value that tries to close a guessed delimiter and set another
	// variable stays one value.
	value := "x\nghadelim_AAAAAAAAAAAAAAAAAAAAAAAAAA\nEVIL<<E\npwned\nE"
	names, values, _ := parseGitHubEnv(t, githubEnvEntry("V", value))
	if !slices.Equal(names, []string{"V"}) || values[0] != value {
		t.Fatalf("%q %q", names, values)
	}
}

func TestGitHubExportFailsBeforeExchange(t *testing.T) {
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"GITHUB_ENV unset": {map[string]string{"GITHUB_ACTIONS": "true", "OIDC_TOKEN": testJWT},
			"GITHUB_ENV is not set: exporting to later steps needs a GitHub Actions runner; pass --export none to print the token instead"},
		"GITHUB_ENV missing file": {map[string]string{"GITHUB_ACTIONS": "true", "OIDC_TOKEN": testJWT, "GITHUB_ENV": "/nonexistent/dir/env"},
			"cannot open $GITHUB_ENV for appending: open /nonexistent/dir/env: no such file or directory: run this as a step of a GitHub Actions job, or pass --export none"},
	} {
		t.Run(name, func(t *testing.T) {
			sc := newSidecar(t, okJSONString)
			h := newRig(tc.env)
			o := h.options(sc.URL)
			o.Export = "auto"
			e := h.run(t, context.Background(), o)
			wantErr(t, e, StepOutput, tc.want)
			if sc.count() != 0 || h.stdout.Len() != 0 {
				t.Fatalf("exchanged anyway (%d requests), stdout %q", sc.count(), h.stdout.String())
			}
		})
	}
}

func TestExportNoneOnGitHubPrints(t *testing.T) {
	sc := newSidecar(t, okJSONString)
	h := newRig(map[string]string{"GITHUB_ACTIONS": "true", "OIDC_TOKEN": testJWT})
	if e := h.run(t, context.Background(), h.options(sc.URL)); e != nil {
		t.Fatal(e)
	}
	if h.stdout.String() != issued+"\n" {
		t.Fatalf("stdout %q", h.stdout.String())
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestStdoutFailure(t *testing.T) {
	sc := newSidecar(t, okJSONString)
	h := newRig(tokenEnv())
	o := h.options(sc.URL)
	o.Stdout = failWriter{}
	e := h.run(t, context.Background(), o)
	wantErr(t, e, StepOutput, "cannot write the token to standard output: file already closed")
}
