# syntax=docker/dockerfile:1
# Multi-stage build: a static binary on a distroless, non-root base image.
#   docker build -t oidc-sidecar .      (make release-image: both architectures)
# The build stage runs on the builder's platform and cross-compiles for the
# image's (docker buildx --platform linux/amd64,linux/arm64).
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/oidc-sidecar ./cmd/oidc-sidecar

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/oidc-sidecar /usr/local/bin/oidc-sidecar
USER 65532:65532
# 8080: exchange + proxy; 9090: /healthz, /readyz, /metrics, introspection.
EXPOSE 8080 9090
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/oidc-sidecar", "healthcheck", "--url", "http://127.0.0.1:9090/readyz"]
ENTRYPOINT ["/usr/local/bin/oidc-sidecar"]
CMD ["serve", "--config", "/etc/oidc-sidecar/sidecar.yaml"]
