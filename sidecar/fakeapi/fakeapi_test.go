package fakeapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

const upstream = "upstream-credential-0123456789"

func newServer(t *testing.T) (*API, *httptest.Server) {
	t.Helper()
	api := New(upstream)
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return api, srv
}

// do sends a request with the given Authorization (none if "") and returns
// the status, headers and body.
func do(t *testing.T, srv *httptest.Server, method, path, auth, body string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%v: %q", err, body)
	}
	return m
}

func TestAuth(t *testing.T) {
	_, srv := newServer(t)
	for _, auth := range []string{"", "Bearer wrong", "Basic " + upstream, upstream, "Bearer " + upstream + "x", "Bearer"} {
		for _, path := range []string{"/user", "/workspaces/my-company/projects", "/_fake/slow?ms=0", "/_fake/stream", "/nope"} {
			st, h, body := do(t, srv, http.MethodGet, path, auth, "")
			if st != http.StatusUnauthorized || body != `{"errors":[{"message":"Wrong authentication data"}]}`+"\n" {
				t.Errorf("%q %s: %d %q", auth, path, st, body)
			}
			if h.Get("Content-Type") != "application/json" || h.Get("X-Rate-Limit-Limit") != "1000" {
				t.Errorf("headers %v", h)
			}
		}
	}
	for _, auth := range []string{"Bearer " + upstream, "bearer " + upstream, "BEARER  " + upstream} {
		if st, _, body := do(t, srv, http.MethodGet, "/user", auth, ""); st != http.StatusOK {
			t.Errorf("%q: %d %s", auth, st, body)
		}
	}
	// An empty upstream token accepts nothing.
	empty := httptest.NewServer(New(""))
	defer empty.Close()
	if st, _, _ := do(t, empty, http.MethodGet, "/user", "Bearer ", ""); st != http.StatusUnauthorized {
		t.Errorf("empty token: %d", st)
	}
}

func TestShapes(t *testing.T) {
	_, srv := newServer(t)
	auth := "Bearer " + upstream
	get := func(path string) map[string]any {
		t.Helper()
		st, h, body := do(t, srv, http.MethodGet, path, auth, "")
		if st != http.StatusOK || h.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s: %d %q", path, st, body)
		}
		return decode(t, body)
	}

	u := get("/user")
	for _, k := range []string{"url", "html_url", "id", "name", "avatar_url", "title"} {
		if _, ok := u[k]; !ok {
			t.Errorf("/user lacks %s: %v", k, u)
		}
	}
	if ws := get("/workspaces")["workspaces"].([]any); len(ws) == 0 {
		t.Error("no workspaces")
	}
	w := get("/workspaces/my-company")
	if w["domain"] != "my-company" || w["url"] != APIBase+"/workspaces/my-company" || w["name"] != "My Company" {
		t.Errorf("workspace %v", w)
	}
	p := get("/workspaces/my-company/projects")
	if p["url"] != APIBase+"/workspaces/my-company/projects" || p["html_url"] != AppBase+"/my-company/projects" {
		t.Errorf("projects links %v", p)
	}
	list, _ := p["projects"].([]any)
	if len(list) == 0 {
		t.Fatalf("projects %v", p)
	}
	first := list[0].(map[string]any)
	for _, k := range []string{"url", "html_url", "name", "display_name", "status"} {
		if _, ok := first[k]; !ok {
			t.Errorf("project summary lacks %s: %v", k, first)
		}
	}
	if one := get("/workspaces/my-company/projects/web"); one["name"] != "web" || one["default_branch"] != "main" {
		t.Errorf("project %v", one)
	}
	// Escaped segments are unescaped in bodies and re-escaped in links.
	if w := get("/workspaces/my%20co"); w["domain"] != "my co" || w["url"] != APIBase+"/workspaces/my%20co" {
		t.Errorf("escaped workspace %v", w)
	}

	// Executions: run one, read it back, list it.
	base := "/workspaces/my-company/projects/web/pipelines/7/executions"
	st, _, body := do(t, srv, http.MethodPost, base, auth, `{"to_revision":{"revision":"abc123"},"comment":"from CI","branch":{"name":"dev"}}`)
	if st != http.StatusOK {
		t.Fatalf("run: %d %s", st, body)
	}
	run := decode(t, body)
	if run["status"] != "INPROGRESS" || run["comment"] != "from CI" || run["finish_date"] != nil {
		t.Fatalf("run %v", run)
	}
	if rev := run["to_revision"].(map[string]any)["revision"]; rev != "abc123" {
		t.Fatalf("revision %v", rev)
	}
	if pl := run["pipeline"].(map[string]any); pl["id"] != float64(7) {
		t.Fatalf("pipeline %v", pl)
	}
	id := fmt.Sprint(run["id"])
	if run["url"] != APIBase+base+"/"+id {
		t.Fatalf("url %v", run["url"])
	}
	if again := get(base + "/" + id); again["id"] != run["id"] || again["status"] != "INPROGRESS" {
		t.Fatalf("get %v", again)
	}
	if old := get(base + "/1"); old["status"] != "SUCCESSFUL" || old["finish_date"] == nil {
		t.Fatalf("historical %v", old)
	}
	ls := get(base)
	execs := ls["executions"].([]any)
	if len(execs) != 2 || execs[0].(map[string]any)["id"] != run["id"] || ls["total_element_count"] != float64(2) {
		t.Fatalf("list %v", ls)
	}
	// Another pipeline does not see it.
	if other := get("/workspaces/my-company/projects/web/pipelines/8/executions"); len(other["executions"].([]any)) != 1 {
		t.Fatalf("other pipeline %v", other)
	}
	if st, _, body := do(t, srv, http.MethodGet, base+"/99999", auth, ""); st != http.StatusNotFound || !strings.Contains(body, `"errors"`) {
		t.Fatalf("unknown execution: %d %s", st, body)
	}
	if st, _, body := do(t, srv, http.MethodPost, base, auth, `{not json`); st != http.StatusBadRequest || !strings.Contains(body, "Invalid JSON") {
		t.Fatalf("bad JSON: %d %s", st, body)
	}
	if st, _, _ := do(t, srv, http.MethodPost, base, auth, ""); st != http.StatusOK {
		t.Fatalf("empty body: %d", st)
	}
}

func TestCatchAllAndNotFound(t *testing.T) {
	_, srv := newServer(t)
	auth := "Bearer " + upstream
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodPatch, "/workspaces/my-company/projects/web/pipelines/7/executions/100", 200, "{}\n"},
		{http.MethodPost, "/workspaces/my-company/variables", 200, "{}\n"},
		{http.MethodGet, "/workspaces/my-company/sandboxes?project_name=web", 200, "{}\n"},
		{http.MethodPost, "/user/tokens", 200, "{}\n"},
		{http.MethodDelete, "/workspaces/my-company/projects/web/pipelines/7", 204, ""},
		{http.MethodGet, "/nope", 404, `{"errors":[{"message":"Not found: GET /nope"}]}` + "\n"},
		{http.MethodGet, "/", 404, `{"errors":[{"message":"Not found: GET /"}]}` + "\n"},
		{http.MethodGet, "/workspaces//projects", 404, ""},
		{http.MethodGet, "/workspaces/a/../b", 404, ""},
		{http.MethodGet, "/_fake/other", 404, ""},
	} {
		st, _, body := do(t, srv, tc.method, tc.path, auth, "")
		if st != tc.status || (tc.body != "" && body != tc.body) || (tc.status == 404 && !strings.Contains(body, `{"errors":[{"message":`)) {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, st, body)
		}
	}
}

func TestRecording(t *testing.T) {
	api, srv := newServer(t)
	big := strings.Repeat("x", 3000)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/workspaces/my%2Fco/variables?a=1&b=%20", strings.NewReader(big))
	req.Header.Set("Authorization", "Bearer wrong")
	req.Header.Set("X-Custom", "v")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, h, _ := do(t, srv, http.MethodGet, "/user", "Bearer "+upstream, "")

	got := api.Requests()
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
	r := got[0]
	if r.Method != http.MethodPost || r.Path != "/workspaces/my%2Fco/variables" || r.RawQuery != "a=1&b=%20" || r.Header.Get("X-Custom") != "v" || r.Header.Get("Authorization") != "Bearer wrong" {
		t.Fatalf("recorded %+v", r)
	}
	if len(r.Body) != RecordedBodyBytes || string(r.Body) != big[:RecordedBodyBytes] {
		t.Fatalf("body %d bytes", len(r.Body))
	}
	if r.Host == "" {
		t.Fatal("no host")
	}
	// The copies are the caller's.
	got[1].Header.Set("Authorization", "changed")
	if api.Requests()[1].Header.Get("Authorization") != "Bearer "+upstream {
		t.Fatal("Requests shares headers with the recording")
	}
	if h.Get("X-Rate-Limit-Remaining") != "998" {
		t.Fatalf("remaining %q after 2 requests", h.Get("X-Rate-Limit-Remaining"))
	}
	api.Reset()
	if len(api.Requests()) != 0 {
		t.Fatal("Reset kept requests")
	}
	if _, h, _ := do(t, srv, http.MethodGet, "/user", "Bearer "+upstream, ""); h.Get("X-Rate-Limit-Remaining") != "999" {
		t.Fatalf("remaining after reset %q", h.Get("X-Rate-Limit-Remaining"))
	}
}

func TestRecordingIsBounded(t *testing.T) {
	api := New(upstream)
	for i := 0; i < 2*MaxRecorded+5; i++ {
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/user?i=%d", i), nil))
	}
	got := api.Requests()
	if len(got) != MaxRecorded || got[len(got)-1].RawQuery != fmt.Sprintf("i=%d", 2*MaxRecorded+4) {
		t.Fatalf("%d kept, last %q", len(got), got[len(got)-1].RawQuery)
	}
}

func TestSlow(t *testing.T) {
	_, srv := newServer(t)
	start := time.Now()
	st, _, body := do(t, srv, http.MethodGet, "/_fake/slow?ms=50", "Bearer "+upstream, "")
	if st != 200 || time.Since(start) < 50*time.Millisecond || decode(t, body)["slept_ms"] != float64(50) {
		t.Fatalf("%d %s after %s", st, body, time.Since(start))
	}
	for _, q := range []string{"ms=-1", "ms=x", "ms=600000"} {
		if st, _, body := do(t, srv, http.MethodGet, "/_fake/slow?"+q, "Bearer "+upstream, ""); st != 400 || !strings.Contains(body, "ms must be an integer from 0 to 60000") {
			t.Errorf("%s: %d %s", q, st, body)
		}
	}
	// A client that gives up does not keep the handler.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/_fake/slow?ms=60000", nil)
	req.Header.Set("Authorization", "Bearer "+upstream)
	if _, err := srv.Client().Do(req); err == nil {
		t.Fatal("want a timeout")
	}
}

func TestStream(t *testing.T) {
	_, srv := newServer(t)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/_fake/stream?chunks=3&interval_ms=200", nil)
	req.Header.Set("Authorization", "Bearer "+upstream)
	start := time.Now()
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatal(resp.Header)
	}
	sc := bufio.NewScanner(resp.Body)
	var lines []string
	for sc.Scan() {
		if len(lines) == 0 && time.Since(start) > 350*time.Millisecond {
			t.Errorf("first chunk after %s: not flushed", time.Since(start))
		}
		lines = append(lines, sc.Text())
	}
	if strings.Join(lines, "|") != `{"chunk":1,"of":3}|{"chunk":2,"of":3}|{"chunk":3,"of":3}` {
		t.Fatalf("%q", lines)
	}
	if time.Since(start) < 400*time.Millisecond {
		t.Fatalf("3 chunks 200 ms apart took %s", time.Since(start))
	}
	if st, _, body := do(t, srv, http.MethodGet, "/_fake/stream", "Bearer "+upstream, ""); st != 200 || strings.Count(body, "\n") != 3 {
		t.Fatalf("default: %d %q", st, body)
	}
	if st, _, _ := do(t, srv, http.MethodGet, "/_fake/stream?chunks=0", "Bearer "+upstream, ""); st != 400 {
		t.Fatalf("chunks=0: %d", st)
	}
}

func TestConcurrent(t *testing.T) {
	api, srv := newServer(t)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 10; j++ {
				path := "/workspaces/ws/projects/p/pipelines/1/executions"
				req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(`{"comment":"c"}`))
				req.Header.Set("Authorization", "Bearer "+upstream)
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				_ = api.Requests()
				if i == 0 && j == 5 {
					api.Reset()
				}
			}
		}(i)
	}
	wg.Wait()
	_, _, body := do(t, srv, http.MethodGet, "/workspaces/ws/projects/p/pipelines/1/executions", "Bearer "+upstream, "")
	ids := map[any]bool{}
	for _, e := range decode(t, body)["executions"].([]any) {
		id := e.(map[string]any)["id"]
		if ids[id] {
			t.Fatalf("duplicate execution id %v", id)
		}
		ids[id] = true
	}
}
