# One multi-stage Dockerfile for every DSP Lab Go service: a static binary
# in a FROM-scratch image with the healthcheck helper.
#   docker build --build-arg PKG=./distributor/cmd/distributor -t dsplab/distributor .
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG PKG
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/app ${PKG} \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/healthcheck ./tools/healthcheck/cmd/healthcheck \
 && mkdir -p /out/tmp && chmod 1777 /out/tmp

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/
COPY --from=build /out/app /app
COPY --from=build /out/healthcheck /healthcheck
COPY --from=build --chown=65532:65532 /out/tmp /tmp
# The platform API carries the k6 scripts and experiment presets it copies
# into job containers and loads at start (harmless in the other images).
COPY k6 /k6
COPY experiments /experiments
USER 65532:65532
ENTRYPOINT ["/app"]
