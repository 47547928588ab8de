package fakeapi

import (
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The fake's fixed data, shaped like the examples in Buddy's API reference.
var (
	created        = time.Date(2024, 3, 11, 9, 30, 0, 0, time.UTC)
	historicalTime = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	projectNames   = []struct{ name, display string }{
		{"web", "Web"},
		{"octo-repo", "Octo Repo"},
	}
)

const (
	userName       = "Mike Benson"
	historicalRev  = "5b8a3c1f9d2e4a6b7c8d9e0f1a2b3c4d5e6f7a8b"
	defaultBranch  = "main"
	dateLayout     = "2006-01-02T15:04:05Z"
	pipelineName   = "Deploy"
	historicalNote = "Deploy to production"
)

func esc(s string) string { return url.PathEscape(s) }

func user() map[string]any {
	return map[string]any{
		"url":        APIBase + "/user",
		"html_url":   AppBase + "/my-id",
		"id":         1,
		"name":       userName,
		"avatar_url": AppBase + "/image-server/user/0/0/0/0/0/0/1/d643744fbe5ebf2906a4d075a5b97110/w/32/32/AVATAR.png",
		"title":      "Creative Director",
	}
}

func userSummary() map[string]any {
	u := user()
	delete(u, "title")
	return u
}

func workspaceSummary(ws string) map[string]any {
	return map[string]any{
		"url":      APIBase + "/workspaces/" + esc(ws),
		"html_url": AppBase + "/" + esc(ws),
		"id":       1,
		"name":     title(ws),
		"domain":   ws,
	}
}

func workspaces() map[string]any {
	return map[string]any{
		"url":        APIBase + "/workspaces",
		"html_url":   AppBase,
		"workspaces": []any{workspaceSummary("my-company")},
	}
}

func workspace(ws string) map[string]any {
	w := workspaceSummary(ws)
	w["owner_id"] = 1
	w["frozen"] = false
	w["create_date"] = created.Format(dateLayout)
	return w
}

func project(ws, name string, full bool) map[string]any {
	display := title(name)
	for _, p := range projectNames {
		if p.name == name {
			display = p.display
		}
	}
	p := map[string]any{
		"url":          APIBase + "/workspaces/" + esc(ws) + "/projects/" + esc(name),
		"html_url":     AppBase + "/" + esc(ws) + "/" + esc(name),
		"name":         name,
		"display_name": display,
		"status":       "ACTIVE",
	}
	if full {
		p["create_date"] = created.Format(dateLayout)
		p["created_by"] = userSummary()
		p["http_repository"] = "https://github.com/octo-org/" + name + ".git"
		p["ssh_repository"] = "git@github.com:octo-org/" + name + ".git"
		p["default_branch"] = defaultBranch
	}
	return p
}

func projects(ws string) map[string]any {
	list := make([]any, len(projectNames))
	for i, p := range projectNames {
		list[i] = project(ws, p.name, false)
	}
	return map[string]any{
		"url":      APIBase + "/workspaces/" + esc(ws) + "/projects",
		"html_url": AppBase + "/" + esc(ws) + "/projects",
		"projects": list,
	}
}

func pipelineURL(k pipelineKey) string {
	return APIBase + "/workspaces/" + esc(k.workspace) + "/projects/" + esc(k.project) + "/pipelines/" + esc(k.pipeline)
}

func pipelineHTML(k pipelineKey) string {
	return AppBase + "/" + esc(k.workspace) + "/" + esc(k.project) + "/pipelines/pipeline/" + esc(k.pipeline)
}

func pipelineSummary(k pipelineKey) map[string]any {
	var id any = k.pipeline
	if n, err := strconv.Atoi(k.pipeline); err == nil {
		id = n
	}
	return map[string]any{
		"url":      pipelineURL(k),
		"html_url": pipelineHTML(k),
		"id":       id,
		"name":     pipelineName,
		"on":       "CLICK",
		"refs":     []any{"refs/heads/" + defaultBranch},
	}
}

func historical() *execution {
	return &execution{id: historicalExec, start: historicalTime, comment: historicalNote, revision: historicalRev, branch: defaultBranch}
}

// executionJSON renders an execution; a SUCCESSFUL one has a finish date.
func executionJSON(k pipelineKey, e *execution, status string) map[string]any {
	id := strconv.Itoa(e.id)
	var finish any
	if status != "INPROGRESS" {
		finish = e.start.Add(42 * time.Second).Format(dateLayout)
	}
	branch := e.branch
	if branch == "" {
		branch = defaultBranch
	}
	var revision any
	if e.revision != "" {
		revision = map[string]any{"revision": e.revision}
	}
	var comment any
	if e.comment != "" {
		comment = e.comment
	}
	return map[string]any{
		"url":          pipelineURL(k) + "/executions/" + id,
		"html_url":     pipelineHTML(k) + "/execution/" + id,
		"id":           e.id,
		"start_date":   e.start.Format(dateLayout),
		"finish_date":  finish,
		"mode":         "DEFAULT",
		"refresh":      e.refresh,
		"status":       status,
		"triggered_on": "API",
		"comment":      comment,
		"branch":       map[string]any{"name": branch},
		"to_revision":  revision,
		"creator":      userSummary(),
		"pipeline":     pipelineSummary(k),
	}
}

// title turns "my-company" into "My Company".
func title(s string) string {
	words := strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '_' })
	for i, w := range words {
		words[i] = strings.ToUpper(w[:1]) + w[1:]
	}
	return strings.Join(words, " ")
}
