# Meridian — the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Packages with goroutines get the race detector; all of them do, it is cheap
# enough on this code base.
TESTFLAGS ?= -race -count=1 -timeout 28m

.PHONY: all build test demo bench e2e lint generate kube-apiserver clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# The real kube-apiserver the discovery tests run against, built once from the
# k8s.io/kubernetes module (tools/kubeapiserver) and cached under .cache/.
kube-apiserver:
	@scripts/kube-apiserver.sh >/dev/null

test: kube-apiserver
	$(GO) test $(TESTFLAGS) ./...

demo: build
	@echo "make demo: the multi-cluster lab is not built yet"

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

clean:
	rm -rf $(BIN)
