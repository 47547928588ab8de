package routes

import (
	"reflect"
	"strings"
	"testing"
)

func TestDefault(t *testing.T) {
	rs := Default()
	if len(rs) != 50 {
		t.Fatalf("Buddy table has %d routes, want 50 (53 published minus the exchange and the two OAuth routes)", len(rs))
	}
	var run *Route
	for i := range rs {
		if rs[i].Method == "POST" && rs[i].Path == "/workspaces/{workspace}/projects/{project}/pipelines/{pipeline}/executions" {
			run = &rs[i]
		}
		for _, s := range rs[i].Scopes {
			if s == "WORKSPACE" && len(rs[i].Scopes) > 1 {
				t.Errorf("%s %s: WORKSPACE next to a specific scope; the newer Buddy docs drop it (docs/routes.md)", rs[i].Method, rs[i].Path)
			}
		}
		if strings.HasPrefix(rs[i].Path, "/oauth2") || rs[i].Path == "/user/oidc/tokens" {
			t.Errorf("%s must not be in the proxied table", rs[i].Path)
		}
	}
	if run == nil || !reflect.DeepEqual(run.Scopes, []string{"EXECUTION_RUN"}) {
		t.Fatalf("run execution route = %+v, want EXECUTION_RUN", run)
	}
}

func TestParseCSVErrors(t *testing.T) {
	src := "method,path,required_scopes\n" +
		"GET,/ok/{workspace},WORKSPACE\n" +
		"FETCH,/a,WORKSPACE\n" +
		"GET,a/b,WORKSPACE\n" +
		"GET,/a//b,WORKSPACE\n" +
		"GET,/a/../b,WORKSPACE\n" +
		"GET,/a/{x}/{x},WORKSPACE\n" +
		"GET,/ok/{other},WORKSPACE\n" +
		"GET,/c,NOPE\n" +
		"GET,/d\n"
	_, err := ParseCSV("t.csv", strings.NewReader(src), func(s string) bool { return s == "WORKSPACE" })
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		`t.csv:3: method "FETCH" is not one of`,
		`t.csv:4: path "a/b": must start with /`,
		`t.csv:5: path "/a//b": has an empty segment`,
		`t.csv:6: path "/a/../b": has a . or .. segment`,
		`t.csv:7: path "/a/{x}/{x}": variable {x} appears twice`,
		`t.csv:8: GET /ok/{other} duplicates the route on line 2`,
		`t.csv:9: unknown scope "NOPE"`,
		`t.csv:10: want at least 3 columns`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := ParseCSV("h.csv", strings.NewReader("a,b,c\n"), nil); err == nil || !strings.Contains(err.Error(), "method,path,required_scopes") {
		t.Errorf("bad header: %v", err)
	}
	if _, err := ParseCSV("e.csv", strings.NewReader("method,path,required_scopes\n"), nil); err == nil || !strings.Contains(err.Error(), "no routes") {
		t.Errorf("empty table: %v", err)
	}
}

func TestDataRoundTrip(t *testing.T) {
	rs := Default()
	back, err := FromData(Data(rs))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(Data(back), Data(rs)) {
		t.Fatal("Data/FromData is not a round trip")
	}
	if _, err := FromData(map[string]any{}); err == nil {
		t.Fatal("FromData accepted an object")
	}
	if _, err := FromData([]any{map[string]any{"method": "GET", "path": "x"}}); err == nil {
		t.Fatal("FromData accepted a relative path")
	}
}
