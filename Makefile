# The README's commands. `make test` is what CI runs.
GO ?= go
OPA := bin/opa

.PHONY: test unit policy-check build demo bench fuzz clean

# Unit, integration and end-to-end tests (race detector on), then the
# upstream `opa check`/`opa test` over the shipped and generated Rego.
test: unit policy-check

unit:
	$(GO) test -race -count=1 ./...

build:
	$(GO) build -o bin/oidc-sidecar ./cmd/oidc-sidecar

# The upstream opa CLI, pinned by the tool directive in go.mod.
$(OPA):
	$(GO) build -o $(OPA) github.com/open-policy-agent/opa

# The Rego in policies/ and the Rego the compiler generates for the example
# providers must pass the upstream opa binary too, not only our embedding.
# policies/exchange.rego calls the trust library, which the compiler adds to
# every bundle; checked on their own, the policies need it beside them.
policy-check: $(OPA) build
	$(OPA) check --strict policies/ sidecar/trust/lib.rego
	$(OPA) test policies/ sidecar/trust/lib.rego
	rm -rf bin/compiled && bin/oidc-sidecar policy compile --providers examples/providers.yaml --out bin/compiled
	$(OPA) check --strict bin/compiled policies/
	$(OPA) test bin/compiled policies/
# docs/policy.md's "With the upstream opa CLI": the written directory is a
# bundle directory (modules, data.json, .manifest) opa takes as it is.
	rm -rf bin/example && bin/oidc-sidecar policy compile --providers bundles/example/providers.yaml --out bin/example
	$(OPA) check --strict bin/example policies/ bundles/example/policies/
	$(OPA) test bin/example policies/ bundles/example/policies/
	$(OPA) build -o bin/example-opa.tar.gz bin/example policies/ bundles/example/policies/
	$(OPA) eval --bundle bin/example-opa.tar.gz --format raw 'count(data.sidecar.providers)'
	bin/oidc-sidecar policy test --providers bundles/example/providers.yaml policies/ bundles/example/policies/
	bin/oidc-sidecar bundle build --providers examples/providers.yaml -o bin/example.tar.gz
	$(OPA) inspect bin/example.tar.gz
	$(OPA) eval --bundle bin/example.tar.gz --format raw 'count(data.sidecar.routes)'

demo:
	$(GO) run ./cmd/oidc-sidecar demo

clean:
	rm -rf bin dist
