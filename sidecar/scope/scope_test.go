package scope

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated scope table in docs/providers.md")

func TestListComplete(t *testing.T) {
	// Every scope named in buddy-api.md §3 (both tables and the legacy ones)
	// plus ENVIRONMENT_INFO (route pages) and ZONE_* (domain pages).
	want := []string{
		"WORKSPACE", "PROJECT_DELETE", "REPOSITORY_READ", "REPOSITORY_WRITE",
		"EXECUTION_INFO", "EXECUTION_RUN", "EXECUTION_MANAGE", "USER_INFO",
		"USER_KEY", "USER_EMAIL", "MANAGE_EMAILS", "INTEGRATION_INFO",
		"MEMBER_EMAIL", "WEBHOOK_INFO", "WEBHOOK_ADD", "WEBHOOK_MANAGE",
		"VARIABLE_INFO", "VARIABLE_ADD", "VARIABLE_MANAGE",
		"RELEASE_INFO", "RELEASE_RUN", "RELEASE_MANAGE",
		"TOKEN_INFO", "TOKEN_MANAGE", "SANDBOX_INFO", "SANDBOX_MANAGE",
		"TARGET_INFO", "TARGET_ADD", "TARGET_MANAGE", "ENVIRONMENT_INFO",
		"ENVIRONMENT_ADD", "ENVIRONMENT_MANAGE", "INTEGRATION_ADD",
		"INTEGRATION_MANAGE", "ARTIFACT_READ", "ARTIFACT_WRITE",
		"ARTIFACT_MANAGE", "DISTRIBUTION_INFO", "DISTRIBUTION_ADD",
		"DISTRIBUTION_MANAGE", "ZONE_READ", "ZONE_WRITE",
	}
	slices.Sort(want)
	if got := All(); !slices.Equal(got, want) {
		t.Fatalf("All() =\n%v\nwant\n%v", got, want)
	}
	for _, s := range want {
		if !Known(s) {
			t.Errorf("Known(%q) = false", s)
		}
	}
	for _, s := range []string{"", "workspace", "EXECUTION", "EXECUTION_RUN ", "DOMAIN_INFO"} {
		if Known(s) {
			t.Errorf("Known(%q) = true", s)
		}
	}
	// ENVIRONMENT_INFO is stated by Buddy's environment pages; names seen
	// only on the newest pages or in CLI help, with no scope list or
	// hierarchy documented for them, are not scopes here (docs/routes.md).
	if sc, _ := Describe("ENVIRONMENT_INFO"); sc.Inferred {
		t.Error("ENVIRONMENT_INFO is stated by Buddy's pages: not inferred")
	}
	for _, s := range []string{"ENVIRONMENT_READ", "SANDBOX_WRITE", "SANDBOX_READ", "VARIABLE_READ", "VARIABLE_WRITE", "INTEGRATION_READ",
		"DOMAIN_READ", "DOMAIN_MANAGE", "PIPELINE_READ", "PIPELINE_WRITE", "PIPELINE_MANAGE", "PROJECT_MANAGE"} {
		if Known(s) {
			t.Errorf("Known(%q) = true; docs/routes.md says why it is not a scope here", s)
		}
	}
	if sc, _ := Describe("RELEASE_RUN"); !sc.Legacy() {
		t.Error("RELEASE_RUN must be legacy")
	}
	// All returns a copy.
	a := All()
	a[0] = "X"
	if All()[0] == "X" {
		t.Error("All() exposes internal state")
	}
}

func TestEdges(t *testing.T) {
	seen := map[[2]string]bool{}
	for _, e := range Edges() {
		if !Known(e.From) || !Known(e.To) {
			t.Errorf("edge %s -> %s: endpoint not Known", e.From, e.To)
		}
		if e.From == e.To {
			t.Errorf("self edge %s", e.From)
		}
		if seen[[2]string{e.From, e.To}] {
			t.Errorf("duplicate edge %s -> %s", e.From, e.To)
		}
		seen[[2]string{e.From, e.To}] = true
		if e.Source == "" {
			t.Errorf("edge %s -> %s has no source", e.From, e.To)
		}
	}
	stated := map[string]bool{}
	for _, e := range Edges() {
		if e.Stated {
			stated[e.From+">"+e.To] = true
		}
	}
	wantStated := []string{
		"REPOSITORY_WRITE>REPOSITORY_READ", "EXECUTION_MANAGE>EXECUTION_RUN",
		"EXECUTION_RUN>EXECUTION_INFO", "MANAGE_EMAILS>USER_EMAIL",
		"RELEASE_MANAGE>RELEASE_RUN", "RELEASE_RUN>RELEASE_INFO",
	}
	if len(stated) != len(wantStated) {
		t.Errorf("stated edges = %v, want %v", stated, wantStated)
	}
	for _, s := range wantStated {
		if !stated[s] {
			t.Errorf("edge %s must be stated", s)
		}
	}
	if len(Edges()) != 23 {
		t.Errorf("%d edges, want 23", len(Edges()))
	}
}

func TestNoCycles(t *testing.T) {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var visit func(s string, path []string)
	visit = func(s string, path []string) {
		switch color[s] {
		case grey:
			t.Fatalf("cycle: %v", append(path, s))
		case black:
			return
		}
		color[s] = grey
		for _, n := range Implies[s] {
			visit(n, append(path, s))
		}
		color[s] = black
	}
	for _, s := range All() {
		visit(s, nil)
		if slices.Contains(ImpliedBy(s), s) {
			t.Errorf("%s implies itself", s)
		}
	}
}

func TestGrants(t *testing.T) {
	g := Grants(map[string][]string{"A": {"B"}, "B": {"C", "A"}, "D": nil})
	want := map[string][]string{"A": {"A", "B", "C"}, "B": {"A", "B", "C"}, "D": {"D"}}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("Grants = %v, want %v (cycles, targets without a key, leaves)", g, want)
	}
	if !slices.Equal(ImpliedBy("EXECUTION_MANAGE"), []string{"EXECUTION_INFO", "EXECUTION_RUN"}) {
		t.Errorf("ImpliedBy(EXECUTION_MANAGE) = %v", ImpliedBy("EXECUTION_MANAGE"))
	}
	// The closure is closed and holds every direct edge, for every scope.
	for _, s := range All() {
		c := ImpliedBy(s)
		for _, x := range c {
			for _, y := range ImpliedBy(x) {
				if !slices.Contains(c, y) {
					t.Errorf("closure of %s has %s but not %s, which %s implies", s, x, y, x)
				}
			}
		}
		for _, d := range Implies[s] {
			if !slices.Contains(c, d) {
				t.Errorf("closure of %s lacks direct %s", s, d)
			}
		}
	}
}

// covers reports whether holding have grants need through the hierarchy.
func covers(have []string, need string) bool {
	for _, h := range have {
		if h == need || slices.Contains(ImpliedBy(h), need) {
			return true
		}
	}
	return false
}

func TestHierarchy(t *testing.T) {
	tests := []struct {
		have []string
		need string
		want bool
	}{
		{[]string{"EXECUTION_MANAGE"}, "EXECUTION_INFO", true},
		{[]string{"EXECUTION_MANAGE"}, "EXECUTION_RUN", true},
		{[]string{"EXECUTION_RUN"}, "EXECUTION_MANAGE", false},
		{[]string{"EXECUTION_INFO"}, "EXECUTION_INFO", true},
		{[]string{"REPOSITORY_WRITE"}, "REPOSITORY_READ", true},
		{[]string{"REPOSITORY_READ"}, "REPOSITORY_WRITE", false},
		{[]string{"MANAGE_EMAILS"}, "USER_EMAIL", true},
		{[]string{"MANAGE_EMAILS"}, "USER_INFO", false},
		{[]string{"WEBHOOK_MANAGE"}, "WEBHOOK_INFO", true},
		{[]string{"ENVIRONMENT_MANAGE"}, "ENVIRONMENT_INFO", true},
		{[]string{"SANDBOX_MANAGE"}, "SANDBOX_INFO", true},
		{[]string{"TOKEN_MANAGE"}, "TOKEN_INFO", true},
		{[]string{"RELEASE_MANAGE"}, "RELEASE_INFO", true},
		{[]string{"WORKSPACE"}, "MEMBER_EMAIL", false},
		{[]string{"WORKSPACE", "TARGET_ADD"}, "TARGET_INFO", true},
		{[]string{"TARGET_ADD"}, "TARGET_MANAGE", false},
		{[]string{"ARTIFACT_MANAGE"}, "ARTIFACT_READ", true},
		{[]string{"ARTIFACT_WRITE"}, "ARTIFACT_MANAGE", false},
		{nil, "WORKSPACE", false},
		{[]string{"execution_manage"}, "EXECUTION_RUN", false},
	}
	for _, tt := range tests {
		if got := covers(tt.have, tt.need); got != tt.want {
			t.Errorf("%v grants %s: %v, want %v", tt.have, tt.need, got, tt.want)
		}
	}
}

func TestData(t *testing.T) {
	d := Data()
	known, ok := d["known"].([]any)
	if !ok || len(known) != len(All()) {
		t.Fatalf("known = %#v", d["known"])
	}
	for i, s := range All() {
		if known[i] != any(s) {
			t.Errorf("known[%d] = %v, want %s", i, known[i], s)
		}
	}
	imp, ok := d["implies"].(map[string]any)
	if !ok {
		t.Fatalf("implies = %#v", d["implies"])
	}
	if got := imp["EXECUTION_MANAGE"]; !reflect.DeepEqual(got, []any{"EXECUTION_RUN"}) {
		t.Errorf("implies[EXECUTION_MANAGE] = %#v", got)
	}
	if _, ok := imp["WORKSPACE"]; ok {
		t.Error("scopes without edges must be absent from implies")
	}
	if len(imp) != len(Implies) {
		t.Errorf("implies has %d entries, want %d", len(imp), len(Implies))
	}
	// Only plain JSON types, which a JSON round trip preserves exactly.
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Errorf("Data() is not plain JSON:\n%#v\n%#v", d, back)
	}
	// A fresh document on every call.
	known[0] = "CHANGED"
	if Data()["known"].([]any)[0] == "CHANGED" {
		t.Error("Data() shares state between calls")
	}
}

func TestImpliesIsACopy(t *testing.T) {
	Implies["WORKSPACE"] = []string{"PROJECT_DELETE"}
	defer delete(Implies, "WORKSPACE")
	if covers([]string{"WORKSPACE"}, "PROJECT_DELETE") {
		t.Error("changing Implies changed the hierarchy")
	}
}

// TestDocs keeps the scope table in docs/providers.md in step with the
// tables here. Run with -update to rewrite it.
func TestDocs(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "providers.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, MarkdownBegin)
	j := strings.Index(doc, MarkdownEnd)
	if i < 0 || j < i {
		t.Fatalf("%s: markers %q ... %q not found", path, MarkdownBegin, MarkdownEnd)
	}
	want := doc[:i] + MarkdownBegin + "\n" + MarkdownTable() + doc[j:]
	if want == doc {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s: the scope table is out of date; run go test ./sidecar/scope -run TestDocs -update", path)
}
