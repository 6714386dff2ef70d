# DSP Lab — build, test and run targets. `make help` lists them.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
BINARIES  := distributor analyzer devkafka platform-api dsplab service-a service-b
FUZZTIME  ?= 20s
TOOLS     := $(CURDIR)/bin/tools
K6_VERSION := v1.8.1
REGISTRY_VERSION := v3.1.2

.PHONY: help build tools pull otelcol e2e e2e-netem e2e-images e2e-up e2e-down swagger check-config up down test test-no-docker test-docker test-browser test-short race fuzz bench bench-ab bench-ab-analyzer dev vet fmt-check tidy-check clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## static binaries into bin/
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/distributor ./distributor/cmd/distributor
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/analyzer ./services/analyzer/cmd/analyzer
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/devkafka ./tools/devkafka/cmd/devkafka
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/platform-api ./platform-api/cmd/platform-api
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/dsplab ./platform-api/cmd/dsplab
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/service-a ./services/service-a/cmd/service-a
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/service-b ./services/service-b/cmd/service-b

SWAG_VERSION := v1.16.6
SWAG_ARGS := init -q -g api.go -d platform-api/internal/api,platform-api/internal/faults,platform-api/internal/traffic,platform-api/internal/alerts,platform-api/internal/experiments,platform-api/internal/ledgercheck,platform-api/internal/apierr --packageName apidocs --outputTypes go,json,yaml

tools: $(TOOLS)/k6 $(TOOLS)/swag $(TOOLS)/registry ## tools built from the Go module proxy into bin/tools: k6 $(K6_VERSION), swag $(SWAG_VERSION), the Distribution registry $(REGISTRY_VERSION) (image pull tests)

$(TOOLS)/k6:
	@mkdir -p $(TOOLS)
	CGO_ENABLED=0 GOBIN=$(TOOLS) GOFLAGS=-buildvcs=false $(GO) install go.k6.io/k6@$(K6_VERSION)

# The Docker Distribution registry: the platform's image-pull tests push
# to it on 127.0.0.1 and let the platform pull from it.
$(TOOLS)/registry:
	@mkdir -p $(TOOLS)
	CGO_ENABLED=0 GOBIN=$(TOOLS) GOFLAGS=-buildvcs=false $(GO) install github.com/distribution/distribution/v3/cmd/registry@$(REGISTRY_VERSION)

$(TOOLS)/swag:
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) GOFLAGS=-buildvcs=false $(GO) install github.com/swaggo/swag/cmd/swag@$(SWAG_VERSION)

OTELCOL_VERSION := v0.155.0

otelcol: $(TOOLS)/otelcol-dsplab ## the OTel Collector (contrib components of otel/collector.yaml) built with the collector builder $(OTELCOL_VERSION) from the module proxy (~6 min)

$(TOOLS)/otelcol-dsplab: otel/builder/manifest.yaml
	@mkdir -p $(TOOLS)
	CGO_ENABLED=0 GOBIN=$(TOOLS) GOFLAGS=-buildvcs=false $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OTELCOL_VERSION)
	cd otel/builder && CGO_ENABLED=0 GOFLAGS=-buildvcs=false $(TOOLS)/builder --config manifest.yaml
	cp otel/builder/_build/otelcol-dsplab $@

E2E_COMPOSE := docker-compose -f docker-compose.yml -f test/e2e/docker-compose.e2e.yml

e2e-images: build tools otelcol ## build every image of the e2e stack locally (test/e2e/images.sh; needs Debian's prometheus and prometheus-alertmanager)
	TOOLS="$(TOOLS)" test/e2e/images.sh

e2e: e2e-images ## the end-to-end suite on the real Docker engine: the compose stack with test/e2e/docker-compose.e2e.yml, the workshop story through the platform API, Swagger UI in Chromium
	E2E_COMPOSE="$(E2E_COMPOSE)" $(GO) test -tags e2e -count=1 -timeout 50m -v ./test/e2e/

e2e-netem: build ## netem faults for real: boots a Debian VM (qemu; its kernel has sch_netem), runs every netem fault type through the platform API in it (test/e2e/netem/run.sh; needs root; NETEM_SUBSET=ci: the same checks on smaller samples; NETEM_PRESETS=1: the link-loss and service-delay presets too, needs make tools otelcol)
	TOOLS="$(TOOLS)" test/e2e/netem/run.sh

e2e-up: e2e-images ## start the e2e stack by hand (locally built images), to explore it
	$(E2E_COMPOSE) up -d --no-build

e2e-down: ## stop the e2e stack and remove its containers, networks and volumes
	$(E2E_COMPOSE) down -v --remove-orphans

SWAGGER_OUT ?= platform-api/internal/apidocs

swagger: $(TOOLS)/swag ## regenerate the platform API's OpenAPI spec (platform-api/internal/apidocs) from the swag comments
	$(TOOLS)/swag $(SWAG_ARGS) -o $(SWAGGER_OUT)

# The packages whose tests drive the real Docker engine (containers, faults,
# k6 jobs): `make test-docker`, not `make test`.
DOCKER_PKGS := $(addprefix github.com/dsplab/dsplab/platform-api/internal/,app docker dockertest faults traffic)

test: vet fmt-check tidy-check tools ## every test, with the race detector (needs a running Docker Engine for DOCKER_PKGS; without one: make test-no-docker)
	K6_BIN=$(TOOLS)/k6 SWAG_BIN=$(TOOLS)/swag REGISTRY_BIN=$(TOOLS)/registry $(GO) test -race -count=1 -timeout 30m ./...

test-no-docker: vet fmt-check tidy-check tools ## every test that needs no Docker engine (all but DOCKER_PKGS), with the race detector
	K6_BIN=$(TOOLS)/k6 SWAG_BIN=$(TOOLS)/swag REGISTRY_BIN=$(TOOLS)/registry $(GO) test -race -count=1 -timeout 20m $(filter-out $(DOCKER_PKGS),$(shell $(GO) list ./...))

test-browser: ## Swagger UI's "Try it out" and the HTML report pages in headless Chromium, without Docker (needs chromium)
	$(GO) test -tags browser -run Chromium -count=1 -v ./platform-api/internal/api/ ./platform-api/internal/experiments/

test-docker: tools ## only the tests that need a running Docker Engine: platform-api's app, docker, dockertest, faults and traffic packages
	K6_BIN=$(TOOLS)/k6 SWAG_BIN=$(TOOLS)/swag REGISTRY_BIN=$(TOOLS)/registry $(GO) test -race -count=1 -timeout 20m $(DOCKER_PKGS)

test-short: ## unit tests only, fast
	$(GO) test -short -count=1 ./...

vet: ## go vet (with the e2e and bench build tags too)
	$(GO) vet ./...
	$(GO) vet -tags e2e,bench ./test/e2e/ ./test/bench/

fmt-check: ## fail if a file is not gofmt'ed
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

tidy-check: ## fail if go.mod/go.sum are not tidy
	@cp go.mod /tmp/dsplab-go.mod.bak && cp go.sum /tmp/dsplab-go.sum.bak; \
	$(GO) mod tidy; \
	if ! diff -q go.mod /tmp/dsplab-go.mod.bak >/dev/null || ! diff -q go.sum /tmp/dsplab-go.sum.bak >/dev/null; then \
		cp /tmp/dsplab-go.mod.bak go.mod; cp /tmp/dsplab-go.sum.bak go.sum; echo "go.mod/go.sum not tidy: run go mod tidy"; exit 1; fi

check-config: ## validate Prometheus config and rules, run the promtool rule tests, check the Alertmanager config and the compose file (needs promtool, amtool, docker-compose)
	promtool check config prometheus/prometheus.yml
	promtool check rules prometheus/rules/*.yml
	promtool test rules prometheus/tests/*.test.yml
	amtool check-config prometheus/alertmanager/alertmanager.yml
	@if [ -x $(TOOLS)/otelcol-dsplab ]; then echo "$(TOOLS)/otelcol-dsplab validate --config otel/collector.yaml"; \
		$(TOOLS)/otelcol-dsplab validate --config otel/collector.yaml && $(TOOLS)/otelcol-dsplab validate --config test/e2e/tempo-standin.yaml; \
	elif [ -n "$$CI" ]; then echo "CI: the collector is needed to validate otel/collector.yaml (make otelcol)"; exit 1; \
	else echo "skipping the collector config check: run make otelcol first"; fi
	docker-compose config -q
	docker-compose -f docker-compose.yml -f test/e2e/docker-compose.e2e.yml config -q

fuzz: ## run every fuzz target for FUZZTIME each (default 20s; or a count, e.g. 20000x, as CI does)
	@set -e; for p in ./distributor/internal/ingest/ ./internal/jsonr/ ./internal/jsonw/ ./internal/envelope/ ./internal/ledger/ ./internal/httpguard/ ./platform-api/internal/api/; do \
		for t in $$($(GO) test -list '^Fuzz' $$p | grep ^Fuzz); do \
		echo "== $$p $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$p; done; done

BENCH_SECONDS ?= 20

bench: ## micro-benchmarks, then the distributor end to end on the dev stack (needs wrk: apt-get install wrk), then the starvation scenarios (slow bodies, gzip bombs, metadata-heavy packets), then the delivery modes' cost on one analyzer; see docs/BENCHMARKS.md
	$(GO) test -run '^$$' -bench . -benchmem ./distributor/... ./services/... ./internal/envelope/ ./internal/httpserver/
	$(GO) test -run '^$$' -bench ProduceLatency -benchtime 3000x ./tools/devkafka/cmd/devkafka/
	BENCH_SECONDS=$(BENCH_SECONDS) $(GO) test -tags bench -run 'TestDistributorBenchmark|TestDistributorAB|TestStarvationScenarios|TestDeliveryModesBenchmark|TestIdleCost' -count=1 -timeout 45m -v ./test/bench/

BASE ?= main
ABDIR ?= /tmp/dsplab-bench-ab

bench-ab: ## A/B of two distributor builds side by side in one run: BASE (a git ref, default main) against this tree, BENCH_AB_ROUNDS rounds (3); see docs/BENCHMARKS.md
	rm -rf $(ABDIR) && mkdir -p $(ABDIR)/src && git archive $(BASE) | tar -x -C $(ABDIR)/src
	cd $(ABDIR)/src && CGO_ENABLED=0 $(GO) build -o $(ABDIR)/distributor ./distributor/cmd/distributor
	BENCH_AB_BASE=$(ABDIR)/distributor BENCH_SECONDS=$(BENCH_SECONDS) $(GO) test -tags bench -run 'TestDistributorAB' -count=1 -timeout 45m -v ./test/bench/

bench-ab-analyzer: ## A/B of two analyzer builds in the same seconds (one distributor, equal weights): BASE (a git ref, default main) as analyzer-1 against this tree's as analyzer-2; see docs/BENCHMARKS.md
	rm -rf $(ABDIR) && mkdir -p $(ABDIR)/src && git archive $(BASE) | tar -x -C $(ABDIR)/src
	cd $(ABDIR)/src && CGO_ENABLED=0 $(GO) build -o $(ABDIR)/analyzer ./services/analyzer/cmd/analyzer
	BENCH_AB_ANALYZER_BASE=$(ABDIR)/analyzer BENCH_SECONDS=$(BENCH_SECONDS) $(GO) test -tags bench -run 'TestAnalyzerAB' -count=1 -timeout 45m -v ./test/bench/

pull: ## pre-pull the job images the platform starts (K6_IMAGE, PUMBA_IMAGE, PUMBA_NETTOOLS_IMAGE of .env), e.g. before an offline workshop
	./tools/scripts/pull-images.sh

up: ## start the whole stack with Docker Compose (needs the images' registries; the platform then pulls its job images itself, see make pull)
	docker compose up -d --build 2>/dev/null || docker-compose up -d --build

down: ## stop the stack and remove its containers, networks and volumes
	docker compose down -v 2>/dev/null || docker-compose down -v

dev: build ## run the dev stack on the host: devkafka, analyzer-1..3, distributor (Ctrl-C stops all)
	./tools/scripts/dev.sh

clean: ## remove build output
	rm -rf $(BIN)
