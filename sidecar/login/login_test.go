package login

import (
	"context"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"no URL", func(o *Options) { o.SidecarURL = " " },
			"sidecar URL is not set: pass --sidecar-url or set OIDC_SIDECAR_URL"},
		{"relative URL", func(o *Options) { o.SidecarURL = "sidecar.example.com" },
			`--sidecar-url "sidecar.example.com" is not an absolute http(s) URL: use the sidecar's base URL, e.g. https://sidecar.example.com`},
		{"other scheme", func(o *Options) { o.SidecarURL = "ftp://sidecar.example.com" },
			`--sidecar-url "ftp://sidecar.example.com" is not an absolute http(s) URL`},
		{"plain http", func(o *Options) { o.SidecarURL = "http://sidecar.example.com" },
			`--sidecar-url "http://sidecar.example.com" uses plain http: use https (plain http is accepted only for loopback hosts: localhost, 127.0.0.1, ::1)`},
		{"query", func(o *Options) { o.SidecarURL = "https://sidecar.example.com/?x=1" },
			`--sidecar-url "https://sidecar.example.com/?x=1" has a query or fragment: use the sidecar's base URL only`},
		{"credentials", func(o *Options) { o.SidecarURL = "https://user:secret@sidecar.example.com" },
			"--sidecar-url must not contain a user name or password: the exchange needs no credentials"},
		{"no provider", func(o *Options) { o.ProviderID = "" },
			"provider ID is not set: pass --provider-id or set OIDC_SIDECAR_PROVIDER_ID"},
		{"provider not a UUID", func(o *Options) { o.ProviderID = "my-provider" },
			`--provider-id "my-provider" is not a UUID: copy the provider's id from the sidecar's providers.yaml (8-4-4-4-12 hex digits)`},
		{"source", func(o *Options) { o.Source = "gitlab" },
			`--source "gitlab" is not one of auto, github, circleci, env:NAME, file:PATH`},
		{"source env empty", func(o *Options) { o.Source = "env:" },
			"--source env: needs a variable name, e.g. --source env:MY_OIDC_TOKEN"},
		{"source env bad name", func(o *Options) { o.Source = "env:A-B" },
			`--source "env:A-B": "A-B" is not a valid variable name`},
		{"source file empty", func(o *Options) { o.Source = "file:" },
			"--source file: needs a path, e.g. --source file:/tmp/oidc-token"},
		{"format", func(o *Options) { o.Format = "yaml" },
			`--format "yaml" is not one of token, env, json`},
		{"export", func(o *Options) { o.Export = "circleci" },
			`--export "circleci" is not one of auto, github, none`},
		{"env name", func(o *Options) { o.EnvName = "1TOKEN" },
			`--env-name "1TOKEN" is not a valid variable name: use letters, digits and underscores, not starting with a digit`},
		{"env name clash", func(o *Options) { o.EnvName = "BUDDY_API_ENDPOINT" },
			"--env-name BUDDY_API_ENDPOINT clashes with the variable that carries the sidecar's URL: choose another name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newRig(tokenEnv())
			o := h.options("https://sidecar.example.com")
			tc.edit(&o)
			e := h.run(t, context.Background(), o)
			wantErr(t, e, StepUsage)
			if len(e.Line) < len(tc.want) || e.Line[:len(tc.want)] != tc.want {
				t.Fatalf("line %q\nwant %q", e.Line, tc.want)
			}
		})
	}
}

func TestAcceptedURLs(t *testing.T) {
	for in, want := range map[string]string{
		"https://sidecar.example.com":           "https://sidecar.example.com",
		"https://sidecar.example.com/":          "https://sidecar.example.com",
		"https://example.com/buddy-sidecar/":    "https://example.com/buddy-sidecar",
		"http://127.0.0.1:8080":                 "http://127.0.0.1:8080",
		"http://localhost:8080/":                "http://localhost:8080",
		"http://[::1]:8080":                     "http://[::1]:8080",
		"http://sidecar.localhost":              "http://sidecar.localhost",
		" HTTPS://Sidecar.Example.com:8443/x/ ": "https://Sidecar.Example.com:8443/x",
	} {
		got, e := checkSidecarURL(in)
		if e != nil || got != want {
			t.Errorf("checkSidecarURL(%q) = %q, %v; want %q", in, got, e, want)
		}
	}
}

func TestOneLine(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb\r\n\tc":        "a b c",
		"  lead  trail  ":    "lead trail",
		"x\x1b[31mred\x00y":  "x [31mred y",
		"abcdef":             "abc…",
		"\u2028sep\u0085nel": "sep nel",
	} {
		max := 0
		if in == "abcdef" {
			max = 3
		}
		if got := oneLine(in, max); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
