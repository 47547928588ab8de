package test

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/oidc-sidecar/oidc-sidecar/sidecar/provider"
	"github.com/oidc-sidecar/oidc-sidecar/sidecar/server"
)

// There is no Docker engine here: these tests parse the deployment files and
// check that what they reference exists — config keys, env overrides,
// endpoints, ports, files — by loading the configs with the product's own
// parsers.

type composeFile struct {
	Services map[string]struct {
		Build       any               `yaml:"build"`
		Image       string            `yaml:"image"`
		Command     []string          `yaml:"command"`
		Environment map[string]string `yaml:"environment"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		DependsOn   map[string]struct {
			Condition string `yaml:"condition"`
		} `yaml:"depends_on"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
		User     string `yaml:"user"`
		ReadOnly bool   `yaml:"read_only"`
	} `yaml:"services"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func envKnown(k string) bool {
	for _, e := range server.EnvKeys() {
		if e == k {
			return true
		}
	}
	return false
}

// composeEnv resolves ${VAR:-default} as compose does with VAR unset.
func composeEnv(env map[string]string) func(string) string {
	return func(k string) string {
		v := env[k]
		if strings.HasPrefix(v, "${") && strings.Contains(v, ":-") {
			v = strings.TrimSuffix(v[strings.Index(v, ":-")+2:], "}")
		}
		return v
	}
}

// mountedAt reports whether a compose volume is mounted at dir.
func mountedAt(volumes []string, dir string) bool {
	for _, v := range volumes {
		if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[1] == dir {
			return true
		}
	}
	return false
}

func TestComposeFile(t *testing.T) {
	var c composeFile
	readYAML(t, "../docker-compose.yml", &c)
	for _, name := range []string{"sidecar", "redis", "upstream"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("service %q missing", name)
		}
	}
	sc := c.Services["sidecar"]
	if strings.Join(sc.Command, " ") != "serve --config /etc/oidc-sidecar/sidecar.yaml" {
		t.Errorf("sidecar command: %v", sc.Command)
	}
	for k := range sc.Environment {
		if strings.HasPrefix(k, server.EnvPrefix) && !envKnown(k) && k != "OIDC_SIDECAR_ADMIN_TOKEN" {
			t.Errorf("sidecar env %s overrides no configuration key", k)
		}
	}
	// The mounted config must load with the compose environment applied.
	var mountedConfig string
	for _, v := range sc.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == "/etc/oidc-sidecar" {
			mountedConfig = "../" + strings.TrimPrefix(parts[0], "./") + "/sidecar.yaml"
		}
	}
	if mountedConfig == "" {
		t.Fatal("no volume mounted at /etc/oidc-sidecar")
	}
	getenv := composeEnv(sc.Environment)
	cfg, err := server.LoadConfig(mountedConfig, getenv)
	if err != nil {
		t.Fatalf("the config compose mounts does not load: %v", err)
	}
	if cfg.Upstream.URL != "http://upstream:8081" || cfg.Redis == nil || cfg.Redis.URL != "redis://redis:6379/0" {
		t.Errorf("compose overrides not applied: upstream %q redis %+v", cfg.Upstream.URL, cfg.Redis)
	}
	if getenv(cfg.Upstream.TokenEnv) == "" {
		t.Errorf("compose does not set %s (upstream.token_env)", cfg.Upstream.TokenEnv)
	}
	if _, err := provider.Load(cfg.Providers); err != nil {
		t.Errorf("providers file of the compose config: %v", err)
	}
	_, listenPort, _ := net.SplitHostPort(cfg.Listen)
	_, adminPort, _ := net.SplitHostPort(cfg.AdminListen)
	if !strings.HasPrefix(cfg.Listen, "0.0.0.0:") || !strings.HasPrefix(cfg.AdminListen, "0.0.0.0:") {
		t.Errorf("inside a container the sidecar must listen on 0.0.0.0: %s %s", cfg.Listen, cfg.AdminListen)
	}
	published := strings.Join(sc.Ports, " ")
	if !strings.Contains(published, ":"+listenPort) || !strings.Contains(published, "127.0.0.1:"+adminPort+":"+adminPort) {
		t.Errorf("ports %v: want the main port published and the admin port on loopback only", sc.Ports)
	}
	hc := strings.Join(sc.Healthcheck.Test, " ")
	if !strings.Contains(hc, "oidc-sidecar healthcheck") || !strings.Contains(hc, "127.0.0.1:"+adminPort+server.ReadyPath) {
		t.Errorf("healthcheck %q must call the binary's healthcheck on the admin port's %s", hc, server.ReadyPath)
	}
	// The main port serves HTTPS from a mounted directory.
	if !cfg.TLS.Enabled() || !mountedAt(sc.Volumes, filepath.Dir(cfg.TLS.CertFile)) || filepath.Dir(cfg.TLS.KeyFile) != filepath.Dir(cfg.TLS.CertFile) {
		t.Errorf("compose must serve TLS from a mounted directory: tls %+v, volumes %v", cfg.TLS, sc.Volumes)
	}
	if sc.DependsOn["redis"].Condition != "service_healthy" {
		t.Error("sidecar must wait for a healthy redis")
	}
	if sc.User == "" || strings.HasPrefix(sc.User, "0") || !sc.ReadOnly {
		t.Errorf("sidecar must run as non-root on a read-only filesystem: user %q read_only %v", sc.User, sc.ReadOnly)
	}
	if !strings.Contains(strings.Join(c.Services["redis"].Healthcheck.Test, " "), "redis-cli ping") {
		t.Error("redis needs a healthcheck")
	}
	up := c.Services["upstream"]
	if len(up.Command) == 0 || up.Command[0] != "fake-upstream" || !strings.Contains(strings.Join(up.Command, " "), "0.0.0.0:8081") {
		t.Errorf("upstream command %v", up.Command)
	}
	if up.Environment["BUDDY_TOKEN"] != sc.Environment["BUDDY_TOKEN"] {
		t.Error("the upstream must accept the credential the sidecar forwards")
	}
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms, users []string
	var entry, health, expose, build string
	sc := bufio.NewScanner(bytes.NewReader(data))
	cont := ""
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasSuffix(line, "\\") {
			cont += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cont = cont+line, ""
		switch {
		case strings.HasPrefix(line, "FROM "):
			froms = append(froms, line)
		case strings.HasPrefix(line, "USER "):
			users = append(users, strings.TrimPrefix(line, "USER "))
		case strings.HasPrefix(line, "ENTRYPOINT "):
			entry = line
		case strings.HasPrefix(line, "HEALTHCHECK "):
			health = line
		case strings.HasPrefix(line, "EXPOSE "):
			expose = line
		case strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build"):
			build = line
		}
	}
	if len(froms) < 2 {
		t.Fatalf("want a multi-stage build, found %d FROM lines", len(froms))
	}
	if !strings.Contains(froms[len(froms)-1], "distroless/static") {
		t.Errorf("final stage %q: want a small static base", froms[len(froms)-1])
	}
	if len(users) == 0 || users[len(users)-1] == "0" || strings.HasPrefix(users[len(users)-1], "root") {
		t.Errorf("final stage must run as non-root, USER %v", users)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/oidc-sidecar") {
		t.Errorf("build %q: want a static build of ./cmd/oidc-sidecar", build)
	}
	if !strings.Contains(entry, "/usr/local/bin/oidc-sidecar") || !strings.Contains(string(data), "COPY --from=build /out/oidc-sidecar /usr/local/bin/oidc-sidecar") {
		t.Errorf("ENTRYPOINT %q does not run the copied binary", entry)
	}
	if !strings.Contains(health, "healthcheck") || !strings.Contains(health, server.ReadyPath) {
		t.Errorf("HEALTHCHECK %q", health)
	}
	if !strings.Contains(expose, "8080") || !strings.Contains(expose, "9090") {
		t.Errorf("EXPOSE %q", expose)
	}
}

// TestKubernetesManifest: the manifest follows the safe topology the docs
// describe — the sidecar in its own Deployment, never in a Pod with the CI
// runner (a Pod's containers share one network namespace, so a job would
// reach the admin listener); a Service that exposes only the main listener;
// a NetworkPolicy that lets the runners reach only that port and the admin
// port only from the monitoring namespace; the runners pointed at the
// Service.
func TestKubernetesManifest(t *testing.T) {
	data, err := os.ReadFile("../deploy/kubernetes/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type probe struct {
		HTTPGet struct {
			Path   string `yaml:"path"`
			Port   string `yaml:"port"`
			Scheme string `yaml:"scheme"`
		} `yaml:"httpGet"`
	}
	type container struct {
		Name          string   `yaml:"name"`
		Args          []string `yaml:"args"`
		RestartPolicy string   `yaml:"restartPolicy"`
		Ports         []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Env []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		VolumeMounts []struct {
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
		Liveness        *probe `yaml:"livenessProbe"`
		Readiness       *probe `yaml:"readinessProbe"`
		SecurityContext struct {
			ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
		} `yaml:"securityContext"`
	}
	type podSpec struct {
		SecurityContext struct {
			RunAsNonRoot bool `yaml:"runAsNonRoot"`
		} `yaml:"securityContext"`
		InitContainers []container `yaml:"initContainers"`
		Containers     []container `yaml:"containers"`
	}
	type peer struct {
		PodSelector *struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"podSelector"`
		NamespaceSelector *struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"namespaceSelector"`
	}
	type doc struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Data map[string]string `yaml:"data"`
		Spec struct {
			Selector any `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
			Ports []struct {
				Port       int    `yaml:"port"`
				TargetPort string `yaml:"targetPort"`
			} `yaml:"ports"`
			PodSelector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"podSelector"`
			Ingress []struct {
				From  []peer `yaml:"from"`
				Ports []struct {
					Port int `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
		} `yaml:"spec"`
	}
	var cm map[string]string
	deployments := map[string]doc{}
	var svc, netpol *doc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var d doc
		if err := dec.Decode(&d); err != nil {
			break
		}
		switch d.Kind {
		case "ConfigMap":
			cm = d.Data
		case "Deployment":
			deployments[d.Metadata.Name] = d
		case "Service":
			svc = &d
		case "NetworkPolicy":
			netpol = &d
		}
	}
	side, ok1 := deployments["oidc-sidecar"]
	runner, ok2 := deployments["ci-runner"]
	if cm == nil || !ok1 || !ok2 || svc == nil || netpol == nil {
		t.Fatal("want a ConfigMap, the oidc-sidecar and ci-runner Deployments, a Service and a NetworkPolicy")
	}
	for _, c := range append(runner.Spec.Template.Spec.InitContainers, runner.Spec.Template.Spec.Containers...) {
		if c.Name == "oidc-sidecar" || strings.Contains(strings.Join(c.Args, " "), "serve") {
			t.Fatal("the sidecar shares the runner's Pod: a CI job reaches its admin listener on 127.0.0.1")
		}
	}
	var sidecar *container
	for i, c := range side.Spec.Template.Spec.Containers {
		if c.Name == "oidc-sidecar" {
			sidecar = &side.Spec.Template.Spec.Containers[i]
		}
	}
	if sidecar == nil || len(side.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("the oidc-sidecar Deployment must run the sidecar alone")
	}
	cfg, err := server.ParseConfig("configmap sidecar.yaml", []byte(cm["sidecar.yaml"]), func(string) string { return "" })
	if err != nil {
		t.Fatalf("ConfigMap sidecar.yaml: %v", err)
	}
	if _, err := provider.Parse("configmap providers.yaml", []byte(cm["providers.yaml"])); err != nil {
		t.Fatalf("ConfigMap providers.yaml: %v", err)
	}
	_, mainPort, _ := net.SplitHostPort(cfg.Listen)
	_, adminPort, _ := net.SplitHostPort(cfg.AdminListen)
	ports := map[string]string{}
	for _, p := range sidecar.Ports {
		ports[p.Name] = strconv.Itoa(p.ContainerPort)
	}
	for name, pr := range map[string]*probe{"liveness": sidecar.Liveness, "readiness": sidecar.Readiness} {
		if pr == nil {
			t.Fatalf("%s probe missing", name)
		}
		if pr.HTTPGet.Path != server.HealthPath && pr.HTTPGet.Path != server.ReadyPath {
			t.Errorf("%s probe path %q is not an admin endpoint", name, pr.HTTPGet.Path)
		}
		if ports[pr.HTTPGet.Port] != adminPort {
			t.Errorf("%s probe port %q is container port %q, but admin_listen is on %s", name, pr.HTTPGet.Port, ports[pr.HTTPGet.Port], adminPort)
		}
	}
	// Both listeners serve TLS from a mounted Secret directory; the probes
	// speak HTTPS.
	mounts := map[string]bool{}
	for _, m := range sidecar.VolumeMounts {
		mounts[m.MountPath] = true
	}
	for _, f := range []string{cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.AdminTLS.CertFile, cfg.AdminTLS.KeyFile} {
		if f == "" || !mounts[filepath.Dir(f)] {
			t.Errorf("TLS file %q is not in a mounted directory (mounts %v)", f, mounts)
		}
	}
	if sidecar.Liveness.HTTPGet.Scheme != "HTTPS" || sidecar.Readiness.HTTPGet.Scheme != "HTTPS" {
		t.Error("with admin_tls the probes must use scheme: HTTPS")
	}
	if sidecar.Readiness.HTTPGet.Path != server.ReadyPath {
		t.Error("readiness must use /readyz (policy loaded and Redis reachable)")
	}
	// The Service: the main listener only.
	if len(svc.Spec.Ports) != 1 || ports[svc.Spec.Ports[0].TargetPort] != mainPort || svc.Metadata.Name != "oidc-sidecar" {
		t.Errorf("the Service must expose only the main listener (container port %s): %+v", mainPort, svc.Spec.Ports)
	}
	// The NetworkPolicy: runners to the main port; the admin port only from monitoring.
	if netpol.Spec.PodSelector.MatchLabels["app"] != "oidc-sidecar" {
		t.Errorf("the NetworkPolicy selects %v", netpol.Spec.PodSelector.MatchLabels)
	}
	for _, rule := range netpol.Spec.Ingress {
		for _, p := range rule.Ports {
			for _, from := range rule.From {
				fromRunner := from.PodSelector != nil && from.PodSelector.MatchLabels["app"] == runner.Spec.Template.Metadata.Labels["app"]
				if strconv.Itoa(p.Port) == adminPort && (fromRunner || from.NamespaceSelector == nil) {
					t.Errorf("the NetworkPolicy lets %+v reach the admin port", from)
				}
				if strconv.Itoa(p.Port) == mainPort && !fromRunner {
					t.Errorf("the main port is open to %+v, not only to the runners", from)
				}
			}
		}
	}
	// The runners use the Service.
	renv := map[string]string{}
	for _, e := range runner.Spec.Template.Spec.Containers[0].Env {
		renv[e.Name] = e.Value
	}
	want := "https://" + svc.Metadata.Name + ":" + strconv.Itoa(svc.Spec.Ports[0].Port)
	if renv["BUDDY_API_ENDPOINT"] != want || renv["OIDC_SIDECAR_URL"] != want {
		t.Errorf("the runner's endpoints %v, want %s", renv, want)
	}
	envs := map[string]bool{}
	for _, e := range sidecar.Env {
		envs[e.Name] = true
	}
	if !envs[cfg.Upstream.TokenEnv] || !envs[cfg.AdminTokenEnv] {
		t.Errorf("the container must set %s and %s from a Secret", cfg.Upstream.TokenEnv, cfg.AdminTokenEnv)
	}
	if !side.Spec.Template.Spec.SecurityContext.RunAsNonRoot || !sidecar.SecurityContext.ReadOnlyRootFilesystem {
		t.Error("the Pod must run as non-root with a read-only root filesystem")
	}
	if strings.Join(sidecar.Args, " ") != "serve --config /etc/oidc-sidecar/sidecar.yaml" {
		t.Errorf("args %v", sidecar.Args)
	}
}
