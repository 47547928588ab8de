package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestExampleConfigLoads(t *testing.T) {
	c, err := LoadConfig("../../examples/sidecar.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.AdminListen != "127.0.0.1:9090" || c.Upstream.URL != "https://api.buddy.works" {
		t.Fatalf("%+v", c)
	}
	if c.Redis != nil { // the tour runs it as written, with no Redis
		t.Fatalf("redis: %+v; the example must run on the embedded store", c.Redis)
	}
	if c.Providers != "../../examples/providers.yaml" {
		t.Fatalf("providers path not resolved against the config's directory: %q", c.Providers)
	}
	if c.OIDC.Leeway.D() != 60*time.Second || c.RateLimits.PerIP != 120 {
		t.Fatalf("%+v %+v", c.OIDC, c.RateLimits)
	}
	if !c.DirectEnabled() {
		t.Fatal("upstream.direct must default to true")
	}
}

func TestEnvOverrides(t *testing.T) {
	src := "upstream:\n  url: https://api.buddy.works\nproviders: p.yaml\n"
	c, err := ParseConfig("c.yaml", []byte(src), env(map[string]string{
		"OIDC_SIDECAR_LISTEN":                    "0.0.0.0:8000",
		"OIDC_SIDECAR_UPSTREAM_URL":              "https://api.eu.buddy.works",
		"OIDC_SIDECAR_REDIS_URL":                 "redis://redis:6379/1",
		"OIDC_SIDECAR_REDIS_MIN_REPLICAS_ACK":    "1",
		"OIDC_SIDECAR_RATE_LIMITS_PER_IP":        "7",
		"OIDC_SIDECAR_OIDC_LEEWAY":               "30s",
		"OIDC_SIDECAR_TRUSTED_PROXIES":           "10.0.0.0/8, 192.0.2.1",
		"OIDC_SIDECAR_WATCH":                     "false",
		"OIDC_SIDECAR_UPSTREAM_IDENTITY_HEADERS": "true",
		"OIDC_SIDECAR_UPSTREAM_DIRECT":           "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "0.0.0.0:8000" || c.Upstream.URL != "https://api.eu.buddy.works" || c.RateLimits.PerIP != 7 ||
		c.OIDC.Leeway.D() != 30*time.Second || len(c.Trusted) != 2 || c.Trusted[1] != "192.0.2.1" || c.WatchEnabled() ||
		!c.Upstream.IdentityHeaders || c.DirectEnabled() {
		t.Fatalf("%+v", c)
	}
	if c.Redis == nil || c.Redis.URL != "redis://redis:6379/1" || c.Redis.MinReplicasAck != 1 {
		t.Fatalf("OIDC_SIDECAR_REDIS_URL must create the redis block: %+v", c.Redis)
	}
}

func TestEveryProblemIsListed(t *testing.T) {
	src := `listen: nope
admin_listen: nope
upstream:
  url: ftp://x
  token_env: ""
unknown_routes: maybe
log_level: loud
trusted_proxies: [bad]
redis:
  url: http://x
oidc:
  leeway: 10m
  refresh_cooldown: 0s
rate_limits:
  per_ip: -1
  ipv6_prefix: 0
limits:
  max_header_bytes: 10
`
	_, err := ParseConfig("bad.yaml", []byte(src), env(map[string]string{"OIDC_SIDECAR_RATE_LIMITS_PER_PROVIDER": "many"}))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		`listen: "nope" is not host:port`,
		`listen and admin_listen are both "nope"`,
		`upstream.url "ftp://x" must be an absolute http(s) URL`,
		`upstream.token_env is required`,
		`providers is required`,
		`unknown_routes is "maybe"`,
		`log_level is "loud"`,
		`trusted_proxies: "bad"`,
		`redis.url "http://x" must start with redis://`,
		`oidc.leeway 10m0s must be between`,
		`oidc.refresh_cooldown 0s must be at least 1s`,
		`rate_limits: per_ip and per_provider must be 0 (off) or positive`,
		`rate_limits.ipv6_prefix 0 must be between 1 and 128`,
		`limits.max_header_bytes 10 is below 4096`,
		`OIDC_SIDECAR_RATE_LIMITS_PER_PROVIDER="many": not an integer`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestUnknownKeyAndBadDuration(t *testing.T) {
	_, err := ParseConfig("c.yaml", []byte("upstream:\n  url: https://x\nproviders: p\nlisten_addr: x\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "c.yaml:4:1: listen_addr: unknown key; did you mean listen?") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = ParseConfig("c.yaml", []byte("upstream:\n  url: https://x\n  timeout: soon\nproviders: p\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Fatalf("bad duration: %v", err)
	}
}

func TestBundleExcludesFiles(t *testing.T) {
	_, err := ParseConfig("c.yaml", []byte("upstream:\n  url: https://x\nproviders: p.yaml\nbundle: b.tar.gz\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "use one or the other") {
		t.Fatalf("%v", err)
	}
	c, err := ParseConfig("c.yaml", []byte("upstream:\n  url: https://x\nbundle: https://bundles.example.com/prod.tar.gz\n"), env(nil))
	if err != nil || c.Bundle == "" {
		t.Fatalf("%v", err)
	}
}

func TestEmptyFileIsDefaultsPlusRequired(t *testing.T) {
	_, err := ParseConfig("empty.yaml", nil, env(nil))
	if err == nil || !strings.Contains(err.Error(), "upstream.url is required") {
		t.Fatalf("%v", err)
	}
}

func TestEnvKeysCoverNestedFields(t *testing.T) {
	keys := strings.Join(EnvKeys(), " ")
	for _, k := range []string{"OIDC_SIDECAR_REDIS_URL", "OIDC_SIDECAR_OIDC_LEEWAY", "OIDC_SIDECAR_TIMEOUTS_SHUTDOWN", "OIDC_SIDECAR_UPSTREAM_TOKEN_ENV"} {
		if !strings.Contains(keys, k) {
			t.Errorf("EnvKeys lacks %s", k)
		}
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.yaml"), env(nil))
	if err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Fatalf("%v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestMoreValidations(t *testing.T) {
	src := `upstream:
  url: https://user:hunter2@api.buddy.works
  timeout: 0s
providers: p.yaml
redis:
  url: http://admin:s3cret@redis:6379
  master_name: mymaster
  pool_size: -1
  min_replicas_ack: -2
timeouts:
  read_header: 0s
  shutdown: -1s
oidc:
  refresh_interval: 10s
  fetch_timeout: 0s
`
	_, err := ParseConfig("c.yaml", []byte(src), env(nil))
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{
		"upstream.url must not carry credentials",
		"upstream.timeout 0s must be positive",
		"redis.master_name (Sentinel) needs addrs",
		"redis.pool_size -1",
		"redis.min_replicas_ack -2 must be 0",
		"timeouts.read_header must be positive",
		"timeouts must not be negative",
		"oidc.refresh_interval 10s must be at least oidc.refresh_cooldown (30s)",
		"oidc.fetch_timeout 0s must be between 100ms and 1m",
		`redis.url "http://redacted@redis:6379" must start with redis://`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	for _, secret := range []string{"hunter2", "s3cret"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error echoes a password: %v", err)
		}
	}
	_, err = ParseConfig("c.yaml", []byte("upstream:\n  url: https://x\nproviders: p\nredis:\n  addrs: [redis-1:6379, nope]\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), `redis.addrs: "nope" is not host:port`) {
		t.Fatalf("%v", err)
	}
}

func TestRelativePathsAreCleaned(t *testing.T) {
	c, err := LoadConfig("../../bundles/example/sidecar.yaml", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Bundle != "../../bundles/example.tar.gz" {
		t.Fatalf("bundle path %q", c.Bundle)
	}
	// Paths from the environment are relative to the config file too.
	c, err = LoadConfig("../../bundles/example/sidecar.yaml", env(map[string]string{"OIDC_SIDECAR_BUNDLE": "other.tar.gz"}))
	if err != nil || c.Bundle != "../../bundles/example/other.tar.gz" {
		t.Fatalf("%v %q", err, c.Bundle)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://bundles.example.com/prod.tar.gz":                  "https://bundles.example.com/prod.tar.gz",
		"https://user:pw@bundles.example.com/b.tar.gz":             "https://redacted@bundles.example.com/b.tar.gz",
		"https://TOKEN@bundles.example.com/b.tar.gz":               "https://redacted@bundles.example.com/b.tar.gz",
		"https://s3.example.com/b.tar.gz?X-Amz-Signature=abc#frag": "https://s3.example.com/b.tar.gz?redacted",
		"redis://:pw@127.0.0.1:6379/0":                             "redis://redacted@127.0.0.1:6379/0",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConfigErrorsSayWhereAndWhat: an unknown key is reported at its line
// and column with its path and the closest known key, never with a Go type;
// a value of the wrong type likewise; parse and validation problems come in
// one list.
func TestConfigErrorsSayWhereAndWhat(t *testing.T) {
	src := "listen: 127.0.0.1:8080\nupstream:\n  timout: 3s\n  identity_headers: maybe\nrate_limits: {per_ip: lots, window: 1m}\nprovidrs: p.yaml\nlisten: 127.0.0.1:8081\n"
	_, err := ParseConfig("sidecar.yaml", []byte(src), env(nil))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"sidecar.yaml: 7 problem(s):",
		"sidecar.yaml:3:3: upstream.timout: unknown key; did you mean timeout?",
		`sidecar.yaml:4:21: upstream.identity_headers: want true or false, got "maybe"`,
		`sidecar.yaml:5:23: rate_limits.per_ip: want an integer, got "lots"`,
		"sidecar.yaml:6:1: providrs: unknown key; did you mean providers?",
		"sidecar.yaml:7:1: listen: set twice (first at line 1); keep one",
		"sidecar.yaml: upstream.url is required",
		"sidecar.yaml: providers is required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	for _, leak := range []string{"struct", "yaml:\"", "!!str", "unmarshal"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("the error leaks Go/YAML internals (%s):\n%v", leak, err)
		}
	}
	// A validation problem of a key in the file is reported at that key.
	_, err = ParseConfig("sidecar.yaml", []byte("upstream:\n  url: ftp://x\nproviders: p.yaml\nlog_level: loud\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), `sidecar.yaml:2:3: upstream.url "ftp://x" must be`) ||
		!strings.Contains(err.Error(), `sidecar.yaml:4:1: log_level is "loud"`) {
		t.Fatalf("%v", err)
	}
	// The top level must be a mapping.
	_, err = ParseConfig("sidecar.yaml", []byte("- listen: x\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "sidecar.yaml:1:1: the file: want a mapping of keys") {
		t.Fatalf("%v", err)
	}
}

// TestConfigSyntaxErrorAtItsLine: yaml.v3 says "line 4" (the mapping's
// start); the mistake — a key indented one space too little — is on line 5.
func TestConfigSyntaxErrorAtItsLine(t *testing.T) {
	src := "listen: 127.0.0.1:8080\nadmin_listen: 127.0.0.1:9090\nupstream:\n  url: https://api.buddy.works\n timeout: 3s\nproviders: p.yaml\n"
	_, err := ParseConfig("sidecar.yaml", []byte(src), env(nil))
	if err == nil || !strings.HasPrefix(err.Error(), "sidecar.yaml:5:2: YAML syntax error: did not find expected key; check the indentation") {
		t.Fatalf("%v", err)
	}
}

// TestUnknownEnvVarWarned: a misspelt OIDC_SIDECAR_* variable is not
// ignored silently; variables that are read elsewhere are not warned about.
func TestUnknownEnvVarWarned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sidecar.yaml")
	if err := os.WriteFile(path, []byte("upstream: {url: https://x}\nproviders: p.yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := []string{"OIDC_SIDECAR_REDIS_URLL=redis://x", "OIDC_SIDECAR_ADMIN_TOKEN=x", "OIDC_SIDECAR_URL=x",
		"OIDC_SIDECAR_LISTEN=127.0.0.1:1", "OIDC_SIDECAR_NOTHING_LIKE_IT_AT_ALL=1", "PATH=/bin"}
	c, err := Load(path, LoadOptions{Getenv: env(map[string]string{"OIDC_SIDECAR_LISTEN": "127.0.0.1:1"}), Environ: environ})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"OIDC_SIDECAR_NOTHING_LIKE_IT_AT_ALL is set but is not a configuration variable; it is ignored (oidc-sidecar serve --help lists them)",
		"OIDC_SIDECAR_REDIS_URLL is set but is not a configuration variable; it is ignored; did you mean OIDC_SIDECAR_REDIS_URL?",
	}
	if strings.Join(c.Warnings, "\n") != strings.Join(want, "\n") {
		t.Fatalf("warnings:\n%s", strings.Join(c.Warnings, "\n"))
	}
}

// TestBundleOverrideReplacesFileSources: the tour serves the bundle it
// built with the example configuration, unchanged: --bundle (relative to
// the working directory) or OIDC_SIDECAR_BUNDLE (relative to the file)
// replaces the file's providers, policies and routes.
func TestBundleOverrideReplacesFileSources(t *testing.T) {
	c, err := Load("../../examples/sidecar.yaml", LoadOptions{Getenv: env(nil), Bundle: "bundles/prod.tar.gz"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Bundle != "bundles/prod.tar.gz" || c.Providers != "" || c.Policies != nil || c.Routes != "" {
		t.Fatalf("bundle %q providers %q policies %v routes %q", c.Bundle, c.Providers, c.Policies, c.Routes)
	}
	c, err = Load("../../examples/sidecar.yaml", LoadOptions{Getenv: env(map[string]string{"OIDC_SIDECAR_BUNDLE": "prod.tar.gz"})})
	if err != nil {
		t.Fatal(err)
	}
	if c.Bundle != "../../examples/prod.tar.gz" || c.Providers != "" {
		t.Fatalf("bundle %q providers %q", c.Bundle, c.Providers)
	}
	// Both from the environment: still a conflict.
	_, err = Load("../../examples/sidecar.yaml", LoadOptions{Getenv: env(map[string]string{"OIDC_SIDECAR_BUNDLE": "b.tar.gz", "OIDC_SIDECAR_PROVIDERS": "p.yaml"})})
	if err == nil || !strings.Contains(err.Error(), "use one or the other") {
		t.Fatalf("%v", err)
	}
}

// TestBundleTokenEnv: the key and its variable; only with a bundle URL.
func TestBundleTokenEnv(t *testing.T) {
	c, err := ParseConfig("c.yaml", []byte("upstream:\n  url: https://x\nbundle: https://source:9090/_sidecar/bundle\n"),
		env(map[string]string{"OIDC_SIDECAR_BUNDLE_TOKEN_ENV": "SRC_TOKEN"}))
	if err != nil || c.BundleTokenEnv != "SRC_TOKEN" {
		t.Fatalf("%v %q", err, c.BundleTokenEnv)
	}
	_, err = ParseConfig("c.yaml", []byte("upstream:\n  url: https://x\nbundle: b.tar.gz\nbundle_token_env: SRC_TOKEN\n"), env(nil))
	if err == nil || !strings.Contains(err.Error(), "bundle_token_env is set but bundle is not an http(s) URL") {
		t.Fatalf("%v", err)
	}
}
