package admin

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
)

// screenshots go to docs/console/ (docs/console.md shows them) with
// OIDC_SIDECAR_SCREENSHOTS=1, else to a temporary directory, so that a test
// run leaves the tree as it was.
var shotDir = func() string {
	if os.Getenv("OIDC_SIDECAR_SCREENSHOTS") == "1" {
		return filepath.Join("..", "..", "docs", "console")
	}
	d, err := os.MkdirTemp("", "oidc-sidecar-screenshots-")
	if err != nil {
		panic(err)
	}
	return d
}()

// browser starts headless Chromium with a fresh profile. Without Chromium
// the test skips, except under CI=true, where it fails.
func browser(t *testing.T) context.Context {
	t.Helper()
	var exe string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (apt-get install -y chromium); the console's browser tests need it")
		}
		t.Skip("chromium not installed: skipping the console's browser tests (apt-get install -y chromium)")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancelB(); cancelA() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(shotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(shotDir, name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitText waits until sel's text contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.textContent.includes(%q); })()`, sel, want)
	run(t, ctx, fmt.Sprintf("waiting for %q in %s", want, sel), chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(20*time.Second)))
}

func login(t *testing.T, ctx context.Context, base string) {
	run(t, ctx, "open the console", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("credential")))
	shot(t, ctx, "login")
	run(t, ctx, "log in",
		chromedp.SendKeys(chromedp.ID("credential"), adminToken),
		chromedp.Submit(chromedp.ID("credential")),
		chromedp.WaitVisible(chromedp.CSS("table.providers")))
}

func TestConsoleBrowser(t *testing.T) {
	ctx := browser(t)
	rg := newRig(t, fixtureYAML)
	base := rg.srv.URL

	// Log in with a wrong credential first: refused at the form.
	run(t, ctx, "wrong login", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("credential")),
		chromedp.SendKeys(chromedp.ID("credential"), "nope"), chromedp.Submit(chromedp.ID("credential")),
		chromedp.WaitVisible(chromedp.CSS(".banner.error")))
	waitText(t, ctx, ".banner.error", "not the admin credential")
	login(t, ctx, base)
	if s := text(t, ctx, "table.providers"); !strings.Contains(s, "GHA - octo-repo:deploy") || !strings.Contains(s, ghaID) {
		t.Fatalf("list: %s", s)
	}
	shot(t, ctx, "list")

	t.Run("create one provider of each type", func(t *testing.T) {
		run(t, ctx, "type menu", chromedp.Click(chromedp.ID("add-provider")), chromedp.WaitVisible(chromedp.ID("type-circleci")))
		shot(t, ctx, "new-type")

		// GitHub Actions: the builder starts with the owner pin.
		run(t, ctx, "github form", chromedp.Click(chromedp.ID("type-github_actions")), chromedp.WaitVisible(chromedp.CSS("#builder .row .value")))
		run(t, ctx, "fill github",
			chromedp.SendKeys(chromedp.ID("f-name"), "GHA - web:release"),
			chromedp.SendKeys(chromedp.CSS("#builder .row .value"), "octo-org"),
			chromedp.Click(chromedp.ID("scope-WORKSPACE")),
			chromedp.Click(chromedp.ID("scope-EXECUTION_RUN")))
		run(t, ctx, "text follows builder", chromedp.Poll[chromedp.Void](`document.querySelector("#f-trust_conditions").value === 'repository_owner is "octo-org"'`, chromedp.WithPollingTimeout(10*time.Second)))
		shot(t, ctx, "new-github")
		run(t, ctx, "save github", chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.ID("provider-id")))
		waitText(t, ctx, "#id-h", "Provider added")
		if s := text(t, ctx, "#snippet-buddy"); !strings.Contains(s, "buddy/login") || !strings.Contains(s, "api_url") {
			t.Fatalf("buddy/login snippet: %s", s)
		}
		shot(t, ctx, "created")

		// CircleCI: the issuer follows the organization ID.
		run(t, ctx, "circleci form", chromedp.Navigate(base+"/providers/new?type=circleci"), chromedp.WaitVisible(chromedp.ID("f-organization_id")),
			chromedp.SendKeys(chromedp.ID("f-name"), "CircleCI deploy"),
			chromedp.SendKeys(chromedp.ID("f-organization_id"), "c2b1f9a0-3b7e-4d3b-9a65-0d2c2f1e8b11"),
			chromedp.Click(chromedp.ID("scope-WORKSPACE")))
		waitText(t, ctx, "#derived-issuer", "https://oidc.circleci.com/org/c2b1f9a0-3b7e-4d3b-9a65-0d2c2f1e8b11")
		run(t, ctx, "save circleci", chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.ID("provider-id")))
		if s := text(t, ctx, "#snippet-curl"); !strings.Contains(s, "CIRCLE_OIDC_TOKEN") {
			t.Fatalf("circleci snippet: %s", s)
		}

		// Other: issuer required.
		run(t, ctx, "other form", chromedp.Navigate(base+"/providers/new?type=other"), chromedp.WaitVisible(chromedp.ID("f-issuer")),
			chromedp.SendKeys(chromedp.ID("f-name"), "Jenkins"),
			chromedp.SendKeys(chromedp.ID("f-issuer"), "https://jenkins.example.com/oidc"),
			chromedp.SendKeys(chromedp.ID("f-audience"), "sidecar"),
			chromedp.SendKeys(chromedp.ID("f-trust_conditions"), `sub is "job/deploy"`),
			chromedp.Click(chromedp.ID("scope-WORKSPACE")))
		run(t, ctx, "save other", chromedp.Click(chromedp.ID("save")), chromedp.WaitVisible(chromedp.ID("provider-id")))

		names := map[string]bool{}
		for _, p := range rg.engine.Current().Providers {
			names[p.Name] = true
		}
		for _, n := range []string{"GHA - web:release", "CircleCI deploy", "Jenkins"} {
			if !names[n] {
				t.Errorf("%s is not serving", n)
			}
		}
	})

	t.Run("validation error at its field", func(t *testing.T) {
		run(t, ctx, "circleci form", chromedp.Navigate(base+"/providers/new?type=circleci"), chromedp.WaitVisible(chromedp.ID("f-organization_id")),
			chromedp.SendKeys(chromedp.ID("f-organization_id"), "not-a-uuid"))
		waitText(t, ctx, "#err-organization_id", "is not a UUID")
		invalid, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("f-organization_id"), "aria-invalid"))
		if err != nil || invalid.Value != "true" {
			t.Fatal("the field is not marked invalid")
		}
		shot(t, ctx, "validation-error")
		// The GitHub owner pin is enforced in the form as in the file.
		run(t, ctx, "github form", chromedp.Navigate(base+"/providers/new?type=github_actions"), chromedp.WaitVisible(chromedp.ID("f-trust_conditions")),
			chromedp.Evaluate[chromedp.Void](`document.querySelector("#builder").textContent = ""`),
			chromedp.SendKeys(chromedp.ID("f-trust_conditions"), `ref is "refs/heads/main"`))
		waitText(t, ctx, "#err-trust_conditions", "must pin the repository owner")
	})

	t.Run("builder and text round trip", func(t *testing.T) {
		run(t, ctx, "other form", chromedp.Navigate(base+"/providers/new?type=other"), chromedp.WaitVisible(chromedp.ID("f-trust_conditions")),
			chromedp.SendKeys(chromedp.ID("f-trust_conditions"), `project_path matches "platform/*" and environment is one of ["prod", "stage"]`))
		run(t, ctx, "text → builder", chromedp.Poll[chromedp.Void](`document.querySelectorAll("#builder .row").length === 2 && document.querySelectorAll("#builder .row .value")[1].value === "prod, stage"`, chromedp.WithPollingTimeout(10*time.Second)))
		op, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(`#builder .row:nth-child(1) .op`)))
		if err != nil || op != "matches" {
			t.Fatalf("first row's operator %q", op)
		}
		// builder → text: change the second row's values.
		run(t, ctx, "edit a row", chromedp.Evaluate[chromedp.Void](`document.querySelector("#builder .row:nth-child(2) .value").value = ""`),
			chromedp.SendKeys(chromedp.CSS(`#builder .row:nth-child(2) .value`), "prod"))
		run(t, ctx, "builder → text", chromedp.Poll[chromedp.Void](`document.querySelector("#f-trust_conditions").value === 'project_path matches "platform/*" and environment is one of ["prod"]'`, chromedp.WithPollingTimeout(10*time.Second)))
		shot(t, ctx, "builder")
	})

	t.Run("test a token", func(t *testing.T) {
		rg.h.o.Decisions.Record(ghaID, Decision{Time: time.Now(), Outcome: "denied", ClientIP: "203.0.113.7", Replica: "sidecar-0", DecisionID: "01JTESTDECISION",
			Reasons: nil, Message: `ref is "refs/heads/main" (actual: "refs/heads/dev")`})
		run(t, ctx, "provider page", chromedp.Navigate(base+"/providers/"+ghaID), chromedp.WaitVisible(chromedp.ID("test-input")),
			chromedp.SendKeys(chromedp.ID("test-input"), `{"repository_owner": "octo-org", "ref": "refs/heads/dev"}`),
			chromedp.Click(chromedp.ID("test-run")))
		waitText(t, ctx, "#test-result", "DENY")
		waitText(t, ctx, "#test-result", `ref is "refs/heads/main"`)
		waitText(t, ctx, "#test-result", `"refs/heads/dev"`)
		waitText(t, ctx, "#decisions", "01JTESTDECISION")
		shot(t, ctx, "provider")
	})

	t.Run("CSRF-less POST refused", func(t *testing.T) {
		status, err := chromedp.Run(ctx, chromedp.Evaluate[int](`fetch("/_sidecar/admin/v1/providers", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({name: "csrf", type: "other", issuer: "https://x.example.com", scopes: ["WORKSPACE"]})}).then(r => r.status)`, chromedp.EvalAwaitPromise))
		if err != nil || status != 403 {
			t.Fatalf("a POST without the CSRF token answered %d, want 403", status)
		}
		for _, p := range rg.engine.Current().Providers {
			if p.Name == "csrf" {
				t.Fatal("the CSRF-less POST created a provider")
			}
		}
	})

	t.Run("delete with confirmation", func(t *testing.T) {
		run(t, ctx, "provider page", chromedp.Navigate(base+"/providers/"+otherID), chromedp.WaitVisible(chromedp.ID("delete")),
			chromedp.Click(chromedp.ID("delete")), chromedp.WaitVisible(chromedp.ID("delete-dialog")))
		waitText(t, ctx, "#delete-dialog", "tokens stop working")
		shot(t, ctx, "delete")
		// Cancel keeps it.
		run(t, ctx, "cancel", chromedp.Click(chromedp.ID("delete-cancel")), chromedp.WaitNotVisible(chromedp.ID("delete-dialog")))
		if rg.engine.Current().Providers[otherID] == nil {
			t.Fatal("cancel deleted the provider")
		}
		run(t, ctx, "confirm", chromedp.Click(chromedp.ID("delete")), chromedp.WaitVisible(chromedp.ID("delete-confirm")),
			chromedp.Click(chromedp.ID("delete-confirm")), chromedp.WaitVisible(chromedp.CSS("table.providers")))
		if rg.engine.Current().Providers[otherID] != nil || strings.Contains(rg.file(), otherID) {
			t.Fatal("the provider was not deleted")
		}
	})

	t.Run("keyboard-only creation", func(t *testing.T) {
		run(t, ctx, "other form", chromedp.Navigate(base+"/providers/new?type=other"), chromedp.WaitVisible(chromedp.ID("f-name")))
		tabTo := func(id string) {
			t.Helper()
			for i := 0; i < 200; i++ {
				cur, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement ? document.activeElement.id : ""`))
				if err != nil {
					t.Fatal(err)
				}
				if cur == id {
					return
				}
				run(t, ctx, "Tab", chromedp.KeyEvent(kb.Tab))
			}
			t.Fatalf("Tab never reached #%s", id)
		}
		tabTo("f-name")
		run(t, ctx, "type name", chromedp.KeyEvent("Keyboard only"))
		tabTo("f-issuer")
		run(t, ctx, "type issuer", chromedp.KeyEvent("https://ci.example.com"))
		tabTo("f-trust_conditions")
		run(t, ctx, "type conditions", chromedp.KeyEvent(`sub is "main"`))
		tabTo("scope-WORKSPACE")
		run(t, ctx, "tick", chromedp.KeyEvent(" "))
		tabTo("save")
		run(t, ctx, "Enter", chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible(chromedp.ID("provider-id")))
		found := false
		for _, p := range rg.engine.Current().Providers {
			found = found || (p.Name == "Keyboard only" && p.Issuer == "https://ci.example.com")
		}
		if !found {
			t.Fatal("the keyboard-made provider is not serving")
		}
	})
}
