// Package server runs oidc-sidecar: it reads the configuration, builds the
// token store, the OIDC verifier and the policy engine, serves the exchange
// and proxy paths on the main listener and health, readiness, metrics and
// introspection on the admin listener, reloads policy without dropping a
// request, and shuts down gracefully.
package server

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/clientip"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/yamlerr"
)

// EnvPrefix prefixes the environment variables that override config keys:
// OIDC_SIDECAR_LISTEN, OIDC_SIDECAR_REDIS_URL, OIDC_SIDECAR_RATE_LIMITS_PER_IP, ...
const EnvPrefix = "OIDC_SIDECAR_"

// Duration is a time.Duration written as a Go duration string ("30s").
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return errors.New("want a duration such as 30s or 5m")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use a number with a unit: 250ms, 30s, 5m)", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML renders the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Config is the sidecar.yaml file. docs/configuration.md describes every key.
type Config struct {
	Listen      string `yaml:"listen"`       // exchange + proxy
	AdminListen string `yaml:"admin_listen"` // health, readiness, metrics, introspection

	Upstream struct {
		URL             string   `yaml:"url"`
		TokenEnv        string   `yaml:"token_env"` // the variable holding the upstream credential
		Timeout         Duration `yaml:"timeout"`   // to response headers
		IdentityHeaders bool     `yaml:"identity_headers"`
		// Direct (default true) sends bodiless GET and HEAD to a plain-HTTP
		// upstream over the proxy's own HTTP/1.1 path (docs/proxy.md).
		Direct *bool `yaml:"direct"`
	} `yaml:"upstream"`

	Redis *RedisConfig `yaml:"redis"` // nil: the embedded in-memory store

	Providers     string   `yaml:"providers"`      // providers.yaml
	Policies      []string `yaml:"policies"`       // Rego files/directories; empty: the embedded policies/
	Routes        string   `yaml:"routes"`         // route table CSV; empty: Buddy's
	UnknownRoutes string   `yaml:"unknown_routes"` // deny | authenticated
	Bundle        string   `yaml:"bundle"`         // a bundle file, directory or http(s) URL, instead of providers + policies
	BundlePoll    Duration `yaml:"bundle_poll"`    // how often a bundle URL is polled
	// BundleTokenEnv names the variable holding a bearer credential sent
	// when polling a bundle URL (e.g. another sidecar's /_sidecar/bundle).
	BundleTokenEnv string   `yaml:"bundle_token_env"`
	Watch          *bool    `yaml:"watch"` // reload when the files change (default true)
	Trusted        []string `yaml:"trusted_proxies"`
	AdminTokenEnv  string   `yaml:"admin_token_env"` // the variable holding the introspection credential
	LogLevel       string   `yaml:"log_level"`
	// LogFlushInterval, when set, buffers log lines and writes them out at
	// most this often (logbuffer.go); 0 writes each line as it is logged.
	LogFlushInterval Duration      `yaml:"log_flush_interval"`
	OIDC             OIDCConfig    `yaml:"oidc"`
	RateLimits       RateLimits    `yaml:"rate_limits"`
	Limits           Limits        `yaml:"limits"`
	Timeouts         TimeoutConfig `yaml:"timeouts"`

	TLS           TLSConfig      `yaml:"tls"`            // HTTPS on listen (tls.go)
	AdminTLS      AdminTLSConfig `yaml:"admin_tls"`      // HTTPS (and client certificates) on admin_listen
	BuddyResponse string         `yaml:"buddy_response"` // text | json_string: how /user/oidc/tokens returns the token

	// Pprof serves net/http/pprof under /debug/pprof/ on admin_listen,
	// behind the admin credential (serve --pprof; off by default).
	Pprof bool `yaml:"pprof"`

	// Warnings are problems that do not stop the sidecar (an unknown
	// OIDC_SIDECAR_* variable); serve logs them at start.
	Warnings []string `yaml:"-"`
}

// RedisConfig selects the Redis deployment: a URL, a Cluster (addrs) or a
// Sentinel group (addrs + master_name).
type RedisConfig struct {
	URL         string   `yaml:"url"`
	Addrs       []string `yaml:"addrs"`
	MasterName  string   `yaml:"master_name"`
	Username    string   `yaml:"username"`
	PasswordEnv string   `yaml:"password_env"`
	TLS         bool     `yaml:"tls"`
	KeyPrefix   string   `yaml:"key_prefix"`
	Timeout     Duration `yaml:"timeout"`
	PoolSize    int      `yaml:"pool_size"`
	// MinReplicasAck: an exchange (and a revocation) answers only after
	// Redis's WAIT confirmed the write on this many replicas; 0 = do not wait.
	MinReplicasAck int `yaml:"min_replicas_ack"`
}

// OIDCConfig tunes token verification.
type OIDCConfig struct {
	Leeway          Duration `yaml:"leeway"`
	RefreshCooldown Duration `yaml:"refresh_cooldown"`
	RefreshInterval Duration `yaml:"refresh_interval"`
	FetchTimeout    Duration `yaml:"fetch_timeout"`
}

// RateLimits are fixed-window limits on exchanges.
type RateLimits struct {
	PerIP       int      `yaml:"per_ip"`
	PerProvider int      `yaml:"per_provider"`
	Window      Duration `yaml:"window"`
	IPv6Prefix  int      `yaml:"ipv6_prefix"`
}

// Limits cap request sizes.
type Limits struct {
	MaxHeaderBytes   int   `yaml:"max_header_bytes"`
	MaxExchangeBytes int64 `yaml:"max_exchange_bytes"`
}

// TimeoutConfig are the HTTP server timeouts.
type TimeoutConfig struct {
	ReadHeader Duration `yaml:"read_header"`
	Read       Duration `yaml:"read"`
	Write      Duration `yaml:"write"`
	Idle       Duration `yaml:"idle"`
	Shutdown   Duration `yaml:"shutdown"`
	// ExchangeBody bounds the time to receive the body of an exchange,
	// revocation or introspection request (they are a few KiB).
	ExchangeBody Duration `yaml:"exchange_body"`
}

// Defaults returns the configuration every file starts from.
func Defaults() Config {
	var c Config
	c.Listen = "127.0.0.1:8080"
	c.AdminListen = "127.0.0.1:9090"
	c.Upstream.TokenEnv = "BUDDY_TOKEN"
	c.Upstream.Timeout = Duration(30 * time.Second)
	c.UnknownRoutes = "deny"
	c.BundlePoll = Duration(30 * time.Second)
	c.AdminTokenEnv = "OIDC_SIDECAR_ADMIN_TOKEN"
	c.LogLevel = "info"
	c.BuddyResponse = "text"
	c.OIDC = OIDCConfig{
		Leeway:          Duration(60 * time.Second),
		RefreshCooldown: Duration(30 * time.Second),
		RefreshInterval: Duration(time.Hour),
		FetchTimeout:    Duration(5 * time.Second),
	}
	c.RateLimits = RateLimits{PerIP: 120, PerProvider: 1200, Window: Duration(time.Minute), IPv6Prefix: 64}
	c.Limits = Limits{MaxHeaderBytes: 64 << 10, MaxExchangeBytes: 64 << 10}
	c.Timeouts = TimeoutConfig{
		ReadHeader: Duration(10 * time.Second),
		Read:       Duration(5 * time.Minute),
		Write:      0,
		Idle:       Duration(2 * time.Minute),
		Shutdown:   Duration(30 * time.Second),

		ExchangeBody: Duration(5 * time.Second),
	}
	return c
}

// WatchEnabled reports whether file changes trigger a reload.
func (c *Config) WatchEnabled() bool { return c.Watch == nil || *c.Watch }

// DirectEnabled reports whether the proxy may use its direct upstream path
// (upstream.direct, default true).
func (c *Config) DirectEnabled() bool { return c.Upstream.Direct == nil || *c.Upstream.Direct }

// LoadConfig reads path, applies OIDC_SIDECAR_* environment overrides from
// getenv, and validates the result. Every problem is reported at once.
// Relative file paths in the config are resolved against the config file's
// directory.
func LoadConfig(path string, getenv func(string) string) (*Config, error) {
	return Load(path, LoadOptions{Getenv: getenv})
}

// LoadOptions are what serve adds to the file: its environment and flags.
type LoadOptions struct {
	// Getenv reads the overrides (default os.Getenv).
	Getenv func(string) string
	// Environ is the environment as os.Environ returns it; an
	// OIDC_SIDECAR_* name in it that sets no key gets a warning with the
	// closest real name.
	Environ []string
	// Bundle (serve --bundle) serves this bundle instead of the file's
	// providers, policies and routes. A relative path is relative to the
	// working directory, as on any command line.
	Bundle string
	// Pprof (serve --pprof) turns pprof on whatever the file says.
	Pprof bool
}

// Load is LoadConfig with serve's flags and the environment's names.
func Load(path string, o LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parseConfig(path, data, o.Getenv, o.Bundle)
	if err != nil {
		return nil, err
	}
	c.resolvePaths(dirOf(path))
	if o.Bundle != "" {
		c.Bundle = o.Bundle
	}
	if o.Pprof {
		c.Pprof = true
	}
	c.Warnings = append(c.Warnings, unknownEnv(o.Environ, c)...)
	return c, nil
}

// ParseConfig is LoadConfig on bytes (paths are left as written).
func ParseConfig(name string, data []byte, getenv func(string) string) (*Config, error) {
	return parseConfig(name, data, getenv, "")
}

// parseConfig decodes data key by key against Config's yaml tags (so a new
// key is one struct field), collecting every problem with its position:
// syntax errors, unknown keys (with the closest known key), values of the
// wrong type; then the environment overrides, the --bundle flag (bundle)
// and the validation.
func parseConfig(name string, data []byte, getenv func(string) string, bundle string) (*Config, error) {
	c := Defaults()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		se := yamlerr.Locate(data, err)
		sep := ":"
		if se.Line == 0 {
			sep = ": "
		}
		return nil, fmt.Errorf("%s%s%s", name, sep, se)
	}
	d := &cfgDecoder{file: name, pos: map[string]string{}}
	if len(doc.Content) > 0 {
		d.decode(doc.Content[0], reflect.ValueOf(&c).Elem(), "")
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	fromEnv := map[string]bool{}
	applyEnv(reflect.ValueOf(&c).Elem(), EnvPrefix, "", getenv, fromEnv, &d.errs)
	// A bundle from the environment or the command line replaces the
	// file's sources: the same file serves a bundle or its parts.
	if bundle != "" {
		c.Bundle = bundle
	}
	if bundle != "" || fromEnv["bundle"] {
		if !fromEnv["providers"] {
			c.Providers = ""
		}
		if !fromEnv["policies"] {
			c.Policies = nil
		}
		if !fromEnv["routes"] {
			c.Routes = ""
		}
	}
	for _, msg := range c.validate() {
		d.errs = append(d.errs, d.at(msg, fromEnv))
	}
	if len(d.errs) > 0 {
		return nil, fmt.Errorf("%s: %d problem(s):\n  %s", name, len(d.errs), strings.Join(d.errs, "\n  "))
	}
	return &c, nil
}

// cfgDecoder walks the YAML tree beside the Config struct.
type cfgDecoder struct {
	file string
	errs []string
	pos  map[string]string // key path -> "line:col" of its key
}

var leadingKey = regexp.MustCompile(`^[a-z_]+(\.[a-z_]+)*`)

// at prefixes a validation message with the position of the key it starts
// with, when that key was set in the file.
func (d *cfgDecoder) at(msg string, fromEnv map[string]bool) string {
	k := leadingKey.FindString(msg)
	if p, ok := d.pos[k]; ok && !fromEnv[k] {
		return d.file + ":" + p + ": " + msg
	}
	return d.file + ": " + msg
}

func (d *cfgDecoder) errorf(n *yaml.Node, path, format string, a ...any) {
	d.errs = append(d.errs, fmt.Sprintf("%s:%d:%d: %s: %s", d.file, n.Line, n.Column, path, fmt.Sprintf(format, a...)))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *cfgDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	isNull := n.Kind == yaml.ScalarNode && n.Tag == "!!null"
	t := v.Type()
	switch {
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct:
		if isNull {
			v.Set(reflect.Zero(t))
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(n, v.Elem(), path)
		return
	case t.Kind() == reflect.Struct && t != reflect.TypeOf(Duration(0)):
		if isNull {
			return
		}
		if n.Kind != yaml.MappingNode {
			where := path
			if where == "" {
				where = "the file"
			}
			d.errs = append(d.errs, fmt.Sprintf("%s:%d:%d: %s: want a mapping of keys (key: value lines), got %s", d.file, n.Line, n.Column, where, describe(n)))
			return
		}
		fields := map[string]int{}
		var keys []string
		for i := 0; i < t.NumField(); i++ {
			k := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
			if k != "" && k != "-" {
				fields[k] = i
				keys = append(keys, k)
			}
		}
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			key := kn.Value
			p := join(path, key)
			if prev, dup := seen[key]; dup {
				d.errorf(kn, p, "set twice (first at line %d); keep one", prev.Line)
				continue
			}
			seen[key] = kn
			fi, ok := fields[key]
			if !ok {
				if sug := yamlerr.Suggest(key, keys); sug != "" {
					d.errorf(kn, p, "unknown key; did you mean %s?", sug)
				} else {
					d.errorf(kn, p, "unknown key; the keys here are %s", strings.Join(keys, ", "))
				}
				continue
			}
			d.pos[p] = fmt.Sprintf("%d:%d", kn.Line, kn.Column)
			d.decode(vn, v.Field(fi), p)
		}
		return
	}
	// A leaf: yaml.v3 decodes it into a fresh value, so a bad value leaves
	// the default in place and the other keys are still read.
	nv := reflect.New(t)
	if err := n.Decode(nv.Interface()); err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			d.errorf(n, path, "want %s, got %s", want(t), describe(n))
		} else {
			d.errorf(n, path, "%s", err)
		}
		return
	}
	v.Set(nv.Elem())
}

func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64:
		return "an integer"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list, e.g. [a, b]"
	case reflect.Pointer:
		return want(t.Elem())
	}
	return t.String()
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// configEnvNames are OIDC_SIDECAR_* variables that are not config keys but
// are read elsewhere: the admin credential's default variable, login's
// defaults, and the test suite's switches.
var configEnvNames = []string{"OIDC_SIDECAR_ADMIN_TOKEN", "OIDC_SIDECAR_URL", "OIDC_SIDECAR_PROVIDER_ID",
	"OIDC_SIDECAR_LOAD", "OIDC_SIDECAR_EXCHANGE_LOAD", "OIDC_SIDECAR_EXCHANGE_PROFILE", "OIDC_SIDECAR_E2E_RACE"}

// unknownEnv warns about OIDC_SIDECAR_* variables that set nothing — most
// likely a misspelt override, which would otherwise be ignored silently.
func unknownEnv(environ []string, c *Config) []string {
	known := EnvKeys()
	skip := map[string]bool{c.Upstream.TokenEnv: true, c.AdminTokenEnv: true}
	if c.Redis != nil {
		skip[c.Redis.PasswordEnv] = true
	}
	for _, k := range known {
		skip[k] = true
	}
	for _, k := range configEnvNames {
		skip[k] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || skip[name] {
			continue
		}
		msg := name + " is set but is not a configuration variable; it is ignored"
		if sug := yamlerr.Suggest(name, known); sug != "" {
			msg += "; did you mean " + sug + "?"
		} else {
			msg += " (oidc-sidecar serve --help lists them)"
		}
		out = append(out, msg)
	}
	sort.Strings(out)
	return out
}

func dirOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "."
	}
	return p[:i]
}

func (c *Config) resolvePaths(dir string) {
	rel := func(p string) string {
		if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "://") || dir == "." {
			return p
		}
		return filepath.Clean(dir + "/" + p)
	}
	c.Providers = rel(c.Providers)
	c.Routes = rel(c.Routes)
	c.Bundle = rel(c.Bundle)
	for i := range c.Policies {
		c.Policies[i] = rel(c.Policies[i])
	}
	c.resolveTLSPaths(rel)
}

func (c *Config) validate() []string {
	var errs []string
	add := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	checkAddr := func(key, v string) {
		if _, _, err := net.SplitHostPort(v); err != nil {
			add("%s: %q is not host:port (e.g. 127.0.0.1:8080)", key, v)
		}
	}
	checkAddr("listen", c.Listen)
	checkAddr("admin_listen", c.AdminListen)
	if c.Listen == c.AdminListen {
		add("listen and admin_listen are both %q; the admin listener needs its own address", c.Listen)
	}
	if c.Upstream.URL == "" {
		add("upstream.url is required (e.g. https://api.buddy.works)")
	} else if u, err := url.Parse(c.Upstream.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("upstream.url %q must be an absolute http(s) URL", c.Upstream.URL)
	} else if u.RawQuery != "" || u.Fragment != "" {
		add("upstream.url %q must not have a query or fragment", c.Upstream.URL)
	} else if u.User != nil {
		add("upstream.url must not carry credentials; put the API token in the variable upstream.token_env names")
	}
	if c.Upstream.TokenEnv == "" {
		add("upstream.token_env is required: the name of the variable holding the upstream credential")
	}
	if c.Bundle != "" && (c.Providers != "" || len(c.Policies) > 0 || c.Routes != "") {
		add("bundle is set together with providers/policies/routes; a bundle already contains them — use one or the other")
	}
	if c.Bundle == "" && c.Providers == "" {
		add("providers is required (a providers.yaml file), unless bundle is set")
	}
	if c.Bundle != "" && strings.Contains(c.Bundle, "://") {
		if u, err := url.Parse(c.Bundle); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			add("bundle %q: a bundle URL must be http(s)", redactURL(c.Bundle))
		}
	}
	if c.BundleTokenEnv != "" && !strings.Contains(c.Bundle, "://") {
		add("bundle_token_env is set but bundle is not an http(s) URL; the credential is only sent when polling a bundle URL")
	}
	switch c.UnknownRoutes {
	case "deny", "authenticated":
	default:
		add("unknown_routes is %q; use deny or authenticated", c.UnknownRoutes)
	}
	if d := c.LogFlushInterval.D(); d < 0 || d > MaxLogFlushInterval {
		add("log_flush_interval is %s; use 0 (write each line as it is logged) or a duration up to %s", d, MaxLogFlushInterval)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		add("log_level is %q; use debug, info, warn or error", c.LogLevel)
	}
	for _, t := range c.Trusted {
		if _, err := clientip.New([]string{t}); err != nil {
			add("trusted_proxies: %q is neither an IP address nor a CIDR", t)
		}
	}
	if r := c.Redis; r != nil {
		switch {
		case r.URL != "" && len(r.Addrs) > 0:
			add("redis: set url or addrs, not both")
		case r.URL == "" && len(r.Addrs) == 0:
			add("redis: set url (redis:// or rediss://) or addrs (Cluster, or Sentinel with master_name); omit the whole redis block for the embedded store")
		case r.URL != "":
			if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix") {
				add("redis.url %q must start with redis://, rediss:// or unix://", redactURL(r.URL)) // it may hold a password
			}
			if r.MasterName != "" {
				add("redis.master_name (Sentinel) needs addrs with the Sentinel addresses, not url")
			}
		}
		for _, a := range r.Addrs {
			if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
				add("redis.addrs: %q is not host:port", a)
			}
		}
		if r.PoolSize < 0 {
			add("redis.pool_size %d must be 0 (the client's default) or positive", r.PoolSize)
		}
		if r.MinReplicasAck < 0 {
			add("redis.min_replicas_ack %d must be 0 (do not wait for replicas) or the number of replicas that must confirm each token", r.MinReplicasAck)
		}
		if r.Timeout != 0 && r.Timeout.D() < time.Millisecond {
			add("redis.timeout %s is too small", r.Timeout.D())
		}
	}
	if c.OIDC.Leeway.D() < 0 || c.OIDC.Leeway.D() > 5*time.Minute {
		add("oidc.leeway %s must be between 0s and 5m", c.OIDC.Leeway.D())
	}
	if c.OIDC.RefreshCooldown.D() < time.Second {
		add("oidc.refresh_cooldown %s must be at least 1s (it guards the issuer against kid floods)", c.OIDC.RefreshCooldown.D())
	}
	if c.OIDC.RefreshInterval.D() < c.OIDC.RefreshCooldown.D() {
		add("oidc.refresh_interval %s must be at least oidc.refresh_cooldown (%s)", c.OIDC.RefreshInterval.D(), c.OIDC.RefreshCooldown.D())
	}
	if c.OIDC.FetchTimeout.D() < 100*time.Millisecond || c.OIDC.FetchTimeout.D() > time.Minute {
		add("oidc.fetch_timeout %s must be between 100ms and 1m", c.OIDC.FetchTimeout.D())
	}
	if c.RateLimits.PerIP < 0 || c.RateLimits.PerProvider < 0 {
		add("rate_limits: per_ip and per_provider must be 0 (off) or positive")
	}
	if c.RateLimits.IPv6Prefix < 1 || c.RateLimits.IPv6Prefix > 128 {
		add("rate_limits.ipv6_prefix %d must be between 1 and 128 (64: one bucket per /64, 128: per address)", c.RateLimits.IPv6Prefix)
	}
	if (c.RateLimits.PerIP > 0 || c.RateLimits.PerProvider > 0) && c.RateLimits.Window.D() < time.Second {
		add("rate_limits.window %s must be at least 1s", c.RateLimits.Window.D())
	}
	if c.Limits.MaxHeaderBytes < 4096 {
		add("limits.max_header_bytes %d is below 4096", c.Limits.MaxHeaderBytes)
	}
	if c.Limits.MaxExchangeBytes < 20<<10 {
		add("limits.max_exchange_bytes %d is below 20480 (an OIDC token may be up to 16 KiB)", c.Limits.MaxExchangeBytes)
	}
	t := c.Timeouts
	if t.ReadHeader.D() <= 0 {
		add("timeouts.read_header must be positive (without it a client can hold a connection open forever)")
	}
	if t.Read.D() < 0 || t.Write.D() < 0 || t.Idle.D() < 0 || t.Shutdown.D() < 0 {
		add("timeouts must not be negative (0 means none, except read_header and exchange_body)")
	}
	if t.ExchangeBody.D() <= 0 || t.ExchangeBody.D() > time.Minute {
		add("timeouts.exchange_body %s must be between 1ns and 1m (exchange bodies are a few KiB; without a bound a client can trickle one for timeouts.read)", t.ExchangeBody.D())
	}
	if c.Upstream.Timeout.D() <= 0 {
		add("upstream.timeout %s must be positive", c.Upstream.Timeout.D())
	}
	if c.BundlePoll.D() < time.Second {
		add("bundle_poll %s must be at least 1s", c.BundlePoll.D())
	}
	errs = append(errs, c.validateClientFacing()...)
	return errs
}

// applyEnv overrides struct fields from OIDC_SIDECAR_<PATH> variables,
// where PATH is the yaml key path upper-cased and joined with "_". Lists
// are comma-separated. A variable for the redis block creates it. set
// records the key paths ("redis.url") the environment set.
func applyEnv(v reflect.Value, prefix, path string, getenv func(string) string, set map[string]bool, errs *[]string) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := strings.Split(f.Tag.Get("yaml"), ",")[0]
		if key == "" || key == "-" {
			continue
		}
		name := prefix + strings.ToUpper(key)
		fv := v.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Duration(0)):
			applyEnv(fv, name+"_", join(path, key), getenv, set, errs)
			continue
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct:
			if anyEnvWithPrefix(name+"_", f.Type.Elem(), getenv) {
				if fv.IsNil() {
					fv.Set(reflect.New(f.Type.Elem()))
				}
				applyEnv(fv.Elem(), name+"_", join(path, key), getenv, set, errs)
			}
			continue
		}
		s := getenv(name)
		if s == "" {
			continue
		}
		set[join(path, key)] = true
		if err := setFromString(fv, s); err != nil {
			*errs = append(*errs, fmt.Sprintf("%s=%q: %v", name, s, err))
		}
	}
}

func anyEnvWithPrefix(prefix string, t reflect.Type, getenv func(string) string) bool {
	for i := 0; i < t.NumField(); i++ {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if key != "" && getenv(prefix+strings.ToUpper(key)) != "" {
			return true
		}
	}
	return false
}

func setFromString(fv reflect.Value, s string) error {
	switch fv.Interface().(type) {
	case Duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("not a duration (e.g. 30s)")
		}
		fv.Set(reflect.ValueOf(Duration(d)))
		return nil
	case *bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		fv.Set(reflect.ValueOf(&b))
		return nil
	}
	switch fv.Kind() {
	case reflect.String:
		fv.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not a boolean (true or false)")
		}
		fv.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return errors.New("not an integer")
		}
		fv.SetInt(n)
	case reflect.Slice:
		var items []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				items = append(items, p)
			}
		}
		fv.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// EnvKeys lists every environment variable that overrides a key, sorted
// (for documentation and `serve --help`).
func EnvKeys() []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			key := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if key == "" || key == "-" {
				continue
			}
			name := prefix + strings.ToUpper(key)
			ft := f.Type
			if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != reflect.TypeOf(Duration(0)) {
				walk(ft, name+"_")
				continue
			}
			out = append(out, name)
		}
	}
	walk(reflect.TypeOf(Config{}), EnvPrefix)
	sort.Strings(out)
	return out
}
