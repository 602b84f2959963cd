# Meridian — the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages with goroutines get the race detector; all of them do, it is cheap
# enough on this code base.
TESTFLAGS ?= -race -count=1 -timeout 28m
# grpcnotrace drops golang.org/x/net/trace from grpc, and with it
# html/template: text/template calls methods by name through reflection, so
# linking it keeps every exported method of every type in the binary (8 MB
# of meridian-proxy's 41 MB, all of it resident). Every go command here, the
# tests included, builds what ships.
export GOFLAGS += -tags=grpcnotrace

IMAGE ?= meridian-mesh/meridian
TAG ?= dev
# Debian commands the tests drive (kubectl dry-runs, the dashboard in
# Chromium, Prometheus for the dashboards' queries, shellcheck for scripts,
# ip/tc/iptables for network namespaces).
TEST_TOOLS := kubectl chromium prometheus shellcheck ip tc iptables

.PHONY: all build test test-deps demo bench e2e lint generate kube-apiserver helm image clean

all: build

# Static and path-free, as the image builds them (deploy/Dockerfile).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

# The real kube-apiserver the discovery tests run against, built once from the
# k8s.io/kubernetes module (tools/kubeapiserver) and cached under .cache/.
kube-apiserver:
	@scripts/kube-apiserver.sh >/dev/null

# helm for the chart tests, built once from tools/helm and cached.
helm:
	@scripts/helm.sh >/dev/null

# Everything the tests need that is not Go code, installed or built once,
# outside the test timeout.
test-deps: kube-apiserver helm
	@scripts/apt.sh $(TEST_TOOLS)
	@scripts/spire-agent.sh >/dev/null

test: test-deps
	$(GO) test $(TESTFLAGS) ./...

# The local three-cluster lab: network namespaces when root (loopback
# otherwise), the demo application behind meridian-proxy sidecars, traffic,
# the dashboard. Stays up until Ctrl-C or `bin/meridianctl lab down`.
demo: build
	@scripts/apt.sh ip tc iptables
	$(BIN)/meridianctl lab up

bench: kube-apiserver
	@for b in bench/*.sh; do echo "== $$b"; "$$b" || exit 1; done

e2e: kube-apiserver build
	$(GO) test -count=1 -timeout 60m -v ./e2e-multicluster/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

generate:
	scripts/protoc.sh

# The Meridian images (deploy/Dockerfile): meridiand, meridian-proxy and
# meridianctl, static, on an empty base; and the init image injected pods run
# first. Needs a Docker engine (not run in CI).
image:
	docker build -f deploy/Dockerfile --target meridian -t $(IMAGE):$(TAG) .
	docker build -f deploy/Dockerfile --target init -t $(IMAGE)-init:$(TAG) .

clean:
	rm -rf $(BIN)
