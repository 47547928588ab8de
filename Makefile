# The README's commands. `make test` is what CI runs.
GO ?= go
OPA := bin/opa

.PHONY: test unit policy-check build demo bench fuzz clean release release-binaries release-image

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

# Releases. .github/workflows/release.yml runs `make release-binaries` and
# pushes the image on a v* tag; `make release` does the same locally (the
# image is built, not pushed, and only when docker buildx is there).
# CI checks one target: .ci/run.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
TARGETS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64
IMAGE ?= ghcr.io/oidc-sidecar/oidc-sidecar

release: release-binaries release-image

# dist/oidc-sidecar-<os>-<arch> (static, stamped with VERSION) and
# dist/SHA256SUMS, the checksums the install instructions verify.
release-binaries:
	rm -rf dist && mkdir -p dist
	set -e; for t in $(TARGETS); do \
	  os=$${t%/*}; arch=$${t#*/}; \
	  echo "release: $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
	    -o dist/oidc-sidecar-$$os-$$arch ./cmd/oidc-sidecar; \
	done
	cd dist && if command -v sha256sum >/dev/null; then sha256sum oidc-sidecar-* > SHA256SUMS; \
	  else shasum -a 256 oidc-sidecar-* > SHA256SUMS; fi
	cat dist/SHA256SUMS

# The container image for linux/amd64 and linux/arm64 (Dockerfile).
release-image:
	@if docker buildx version >/dev/null 2>&1; then \
	  docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=$(VERSION) \
	    -t $(IMAGE):$(VERSION) .; \
	else echo "release: docker buildx not found; skipping the image ($(IMAGE):$(VERSION))"; fi

clean:
	rm -rf bin dist
