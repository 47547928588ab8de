package provider

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/uuid"
)

func ghaOptions() NewOptions {
	return NewOptions{
		Type:            GitHubActions,
		Name:            "GHA - octo-repo: deploy",
		TrustConditions: `repository_owner is "octo-org" and ref is "refs/heads/main"`,
		Lifetime:        "1h",
		Scopes:          []string{"WORKSPACE", "EXECUTION_RUN"},
		Workspaces:      []string{"my-company"},
		IPRestrictions:  []string{"203.0.113.0/24", "2001:db8::/32"},
	}
}

const existing = `# Our providers.
# Keep this comment.
providers:
  # first
  - id: 550e8400-e29b-41d4-a716-446655440000
    name: GHA - one   # trailing comment
    type: github_actions
    trust_conditions: |
      repository_owner is "octo-org"
      and ref is "refs/heads/main"
    scopes: [WORKSPACE]

  # commented out:
  # - id: 550e8400-e29b-41d4-a716-446655440009
# end of list
`

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "providers.yaml")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadOK(t *testing.T, path string) *File {
	t.Helper()
	f, err := Load(path)
	if err != nil {
		t.Fatalf("Load after Append: %v", err)
	}
	return f
}

func TestAppendToExisting(t *testing.T) {
	path := writeFile(t, existing, 0o640)
	id, err := Append(path, ghaOptions())
	if err != nil {
		t.Fatal(err)
	}
	if u, err := uuid.Parse(string(id)); err != nil || u.Version() != 4 || u.String() != string(id) {
		t.Errorf("id %q is not a canonical UUID v4", id)
	}
	b, _ := os.ReadFile(path)
	got := string(b)
	// Everything above the insertion point is unchanged, byte for byte, and
	// the comments after the list stay after it.
	prefix := strings.SplitAfter(existing, "    scopes: [WORKSPACE]\n")[0]
	if !strings.HasPrefix(got, prefix) {
		t.Fatalf("prefix changed:\n%s", got)
	}
	want := prefix + `  - id: ` + string(id) + `
    name: 'GHA - octo-repo: deploy'
    type: github_actions
    lifetime: 1h
    trust_conditions: repository_owner is "octo-org" and ref is "refs/heads/main"
    ip_restrictions: [203.0.113.0/24, '2001:db8::/32']
    workspaces: [my-company]
    scopes: [WORKSPACE, EXECUTION_RUN]
` + strings.TrimPrefix(existing, prefix)
	if got != want {
		t.Errorf("file after Append:\n%s\nwant:\n%s", got, want)
	}
	f := loadOK(t, path)
	if len(f.Providers) != 2 || f.Providers[1].ID != id || f.Providers[1].Name != "GHA - octo-repo: deploy" {
		t.Errorf("providers = %+v", f.Providers)
	}
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
			t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
		}
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries", len(entries))
	}
}

func TestAppendCreates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "providers.yaml")
	id, err := Append(path, NewOptions{Type: CircleCI, Name: "circle", OrganizationID: "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d", Scopes: []string{"EXECUTION_RUN"}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := SchemaComment + "\nproviders:\n  - id: " + string(id) + "\n    name: circle\n    type: circleci\n    organization_id: 9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d\n    scopes: [EXECUTION_RUN]\n"
	if string(b) != want {
		t.Errorf("new file:\n%s\nwant:\n%s", b, want)
	}
	if fi, _ := os.Stat(path); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
	p := loadOK(t, path).Providers[0]
	if p.Issuer != CircleCIIssuerPrefix+"9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d" {
		t.Errorf("issuer = %s", p.Issuer)
	}
}

func TestAppendShapes(t *testing.T) {
	opts := NewOptions{Type: Other, Name: "x", Issuer: "https://issuer.example.com", Audience: "aud", TrustConditions: "sub exists", Scopes: []string{"WORKSPACE"}}
	item := func(id, indent string) string {
		return indent + "- id: " + id + "\n" + indent + "  name: x\n" + indent + "  type: other\n" + indent + "  issuer: https://issuer.example.com\n" +
			indent + "  audience: aud\n" + indent + "  trust_conditions: sub exists\n" + indent + "  scopes: [WORKSPACE]\n"
	}
	one := "  - id: 550e8400-e29b-41d4-a716-446655440000\n    name: a\n    type: github_actions\n    trust_conditions: repository_owner is \"o\"\n    scopes: [WORKSPACE]\n"
	tests := []struct {
		name, before string
		after        func(id string) string
	}{
		{"empty file", "", func(id string) string { return SchemaComment + "\nproviders:\n" + item(id, "  ") }},
		{"comments only, no newline", "# hello", func(id string) string { return "# hello\nproviders:\n" + item(id, "  ") }},
		{"null providers", "# c\nproviders:\nx-other: 1\n", func(id string) string { return "# c\nproviders:\n" + item(id, "  ") + "x-other: 1\n" }},
		{"empty flow list", "providers: []  # none yet\n", func(id string) string { return "providers:  # none yet\n" + item(id, "  ") }},
		{"tilde", "providers: ~", func(id string) string { return "providers:\n" + item(id, "  ") }},
		{"no providers key", "x-defaults: {a: 1}\n", func(id string) string { return "x-defaults: {a: 1}\nproviders:\n" + item(id, "  ") }},
		{"list at column 1, more keys after", "providers:\n- id: 550e8400-e29b-41d4-a716-446655440000\n  name: a\n  type: github_actions\n  trust_conditions: repository_owner is \"o\"\n  scopes: [WORKSPACE]\n# tail\nx-z: 1\n",
			func(id string) string {
				return "providers:\n- id: 550e8400-e29b-41d4-a716-446655440000\n  name: a\n  type: github_actions\n  trust_conditions: repository_owner is \"o\"\n  scopes: [WORKSPACE]\n" + item(id, "") + "# tail\nx-z: 1\n"
			}},
		{"no trailing newline", "providers:\n" + strings.TrimSuffix(one, "\n"), func(id string) string { return "providers:\n" + one + item(id, "  ") }},
		{"CRLF", strings.ReplaceAll("# c\nproviders:\n"+one, "\n", "\r\n"), func(id string) string {
			return strings.ReplaceAll("# c\nproviders:\n"+one+item(id, "  "), "\n", "\r\n")
		}},
		{"block scalar last, then blank line and comment", "providers:\n" + strings.Replace(one, "    trust_conditions: repository_owner is \"o\"\n", "", 1) + "    trust_conditions: |\n      repository_owner is \"o\"\n\n      and ref exists\n\n# tail\n",
			func(id string) string {
				return "providers:\n" + strings.Replace(one, "    trust_conditions: repository_owner is \"o\"\n", "", 1) + "    trust_conditions: |\n      repository_owner is \"o\"\n\n      and ref exists\n" + item(id, "  ") + "\n# tail\n"
			}},
		{"anchored list", "providers: &list\n" + one, func(id string) string { return "providers: &list\n" + one + item(id, "  ") }},
		{"document end marker", "providers:\n" + one + "...\n", func(id string) string { return "providers:\n" + one + item(id, "  ") + "...\n" }},
		{"tagged list, comment line first", "providers: !!seq\n  # c\n" + one, func(id string) string { return "providers: !!seq\n  # c\n" + one + item(id, "  ") }},
		{"alias", "x-l: &l\n" + one + "providers: *l\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.before, 0o644)
			id, err := Append(path, opts)
			b, _ := os.ReadFile(path)
			if tt.after == nil { // must fail and leave the file alone
				if err == nil {
					t.Fatalf("Append succeeded:\n%s", b)
				}
				if string(b) != tt.before {
					t.Errorf("file changed on failure")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.after(string(id)); string(b) != want {
				t.Errorf("got:\n%q\nwant:\n%q", b, want)
			}
			loadOK(t, path)
		})
	}
}

func TestAppendInvalidOptions(t *testing.T) {
	path := writeFile(t, existing, 0o644)
	opts := ghaOptions()
	opts.Lifetime = "15m"
	opts.TrustConditions = `ref is "refs/heads/main"`
	opts.Scopes = []string{"WORKSPACE", "EXECUTION_RUNN"}
	opts.IPRestrictions = []string{"10.0.0.*"}
	_, err := Append(path, opts)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	var got []string
	for _, d := range ve.Diagnostics {
		got = append(got, d.String())
	}
	want := []string{
		`new provider: lifetime: "15m" is not a Buddy lifetime preset; use one of 10m, 30m, 1h, 1h30m, 3h, 8h`,
		`new provider: trust_conditions: github_actions providers must pin the repository owner: add repository_owner is "<org>" (or repository_owner_id is "<id>"); Buddy requires it, and without it any repository on GitHub can get a token`,
		`new provider: ip_restrictions[0]: "10.0.0.*": wildcards are not supported; use CIDR notation such as 203.0.113.0/24 or 2001:db8::/32, or a single address`,
		`new provider: scopes[1]: unknown scope "EXECUTION_RUNN"; did you mean EXECUTION_RUN?`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diagnostics:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if b, _ := os.ReadFile(path); string(b) != existing {
		t.Error("file changed")
	}
	// The summary speaks of the new provider, not of a file (which may
	// not exist yet).
	if !strings.HasPrefix(err.Error(), "the new provider is invalid: 4 errors\nnew provider: lifetime:") {
		t.Errorf("error: %v", err)
	}
	if _, err := Append(filepath.Join(t.TempDir(), "none.yaml"), opts); err == nil || strings.Contains(err.Error(), "providers file") {
		t.Errorf("error for a file that does not exist yet: %v", err)
	}

	// Missing type and scopes; circleci without organization.
	for _, tt := range []struct {
		opts NewOptions
		want string
	}{
		{NewOptions{}, `new provider: type: missing; use github_actions, circleci or other` + "\n" +
			`new provider: name: missing; give the provider a label, e.g. "GHA - octo-repo:deploy"` + "\n" +
			`new provider: scopes: empty; list at least one Buddy scope, e.g. [WORKSPACE, EXECUTION_RUN]`},
		{NewOptions{Type: CircleCI, Name: "n", Scopes: []string{"WORKSPACE"}, Workspaces: []string{}},
			`new provider: organization_id: circleci providers need organization_id: the CircleCI organization UUID (CircleCI → Organization Settings → Organization ID)` + "\n" +
				`new provider: workspaces: an empty list allows no workspace at all; omit workspaces to allow all of them, or list the handles`},
		{NewOptions{Type: Other, Name: "n", Issuer: "http://example.com", Scopes: []string{"WORKSPACE"}, Lifetime: "1h"},
			`new provider: warning: audience: no audience: the token's aud claim is not checked, so tokens minted for other services are accepted too; set audience to the value your CI sends` + "\n" +
				`new provider: warning: trust_conditions: no trust_conditions and no policy: any token from http://example.com is accepted; add conditions on the claims that identify your pipelines` + "\n" +
				`new provider: issuer: "http://example.com" uses http; issuers must use https (plain http is accepted only for localhost, 127.0.0.0/8 and ::1)`},
	} {
		_, err := Append(path, tt.opts)
		var ve *ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("err = %v", err)
		}
		var got []string
		for _, d := range ve.Diagnostics {
			got = append(got, d.String())
		}
		if g := strings.Join(got, "\n"); g != tt.want {
			t.Errorf("diagnostics:\n%s\nwant:\n%s", g, tt.want)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != existing {
		t.Error("file changed")
	}
}

func TestAppendRefuses(t *testing.T) {
	tests := map[string]string{
		"invalid file":    "providers:\n  - id: nope\n",
		"flow list":       "providers: [{id: 550e8400-e29b-41d4-a716-446655440000, name: a, type: github_actions, trust_conditions: 'repository_owner is \"o\"', scopes: [WORKSPACE]}]\n",
		"syntax error":    "providers: [\n",
		"flow top level":  "{providers: []}\n",
		"second document": "providers: []\n---\nx: 1\n",
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, content, 0o644)
			if _, err := Append(path, ghaOptions()); err == nil {
				t.Fatal("Append succeeded")
			} else {
				t.Log(err)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Errorf("file changed:\n%s", b)
			}
		})
	}
}

func TestAppendSymlink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("symlinks")
	}
	dir := t.TempDir()
	real := filepath.Join(dir, "real.yaml")
	if err := os.WriteFile(real, []byte(existing), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "providers.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Append(link, ghaOptions()); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Error("the link was replaced by a file")
	}
	if fi, _ := os.Stat(real); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", fi.Mode().Perm())
	}
	if len(loadOK(t, real).Providers) != 2 {
		t.Error("provider not appended to the link's target")
	}
}

func TestAppendTwice(t *testing.T) {
	path := writeFile(t, existing, 0o644)
	id1, err := Append(path, ghaOptions())
	if err != nil {
		t.Fatal(err)
	}
	id2, err := Append(path, ghaOptions())
	if err != nil {
		t.Fatal(err)
	}
	f := loadOK(t, path)
	if id1 == id2 || len(f.Providers) != 3 || f.Providers[1].ID != id1 || f.Providers[2].ID != id2 {
		t.Errorf("ids %s %s, providers %d", id1, id2, len(f.Providers))
	}
}
