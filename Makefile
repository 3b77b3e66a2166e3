# The two commands of the README: `make demo` and `make test`.
GO      ?= go
BIN     := bin/meshaddon
# Slow end-to-end tests share clusters; the first run also builds the test
# bed's binaries (about 10 minutes on 2 cores), hence the long timeout.
TEST_TIMEOUT ?= 75m
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: build demo test unit e2e vet fmt clean generate bench image dist

build:
	$(GO) build -o $(BIN) ./cmd/meshaddon
	$(GO) build -o bin/meshaddon-manager ./cmd/meshaddon-manager
	ln -sf meshaddon bin/kubectl-meshaddon

demo: build
	./hack/demo.sh

test: vet
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

unit:
	$(GO) test -race -count=1 -short ./...

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

clean:
	rm -rf bin

# Benchmarks of the test bed and the add-on manager (bench/): they measure,
# print `RESULT name=value unit` lines and append to bench/out/results.md.
# Skipped by `go test ./...` unless MESHADDON_BENCH=1. The 5,000-node manager
# benchmark takes a while; the cold build runs only with MESHADDON_BENCH_COLD=1.
# BENCH_ARGS picks some: make bench BENCH_ARGS='-run TestTestbed'.
# The raw output of every run is kept in bench/raw/ (committed with the figures
# RESULTS.md copies from it).
bench:
	mkdir -p bench/raw
	MESHADDON_BENCH=1 $(GO) test -count=1 -timeout 60m -v ./bench/ $(BENCH_ARGS) 2>&1 | tee bench/raw/$$(date -u +%Y%m%dT%H%M%SZ).log

# controller-gen writes the deepcopy functions and the CRDs from api/.
CONTROLLER_GEN ?= $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.19.0
generate:
	$(CONTROLLER_GEN) object paths=./api/... crd:maxDescLen=400 output:crd:dir=./config/crd/bases rbac:roleName=meshaddon-manager paths=./internal/manager/... output:rbac:dir=./config/rbac
	$(GO) run ./hack/chart

# The release (internal/ship): VERSION defaults to internal/ship.Version, the
# one config/manager and charts/meshaddon name. Both are reproducible: the
# same source and Go give the same bytes (dated SOURCE_DATE_EPOCH, else 1970).
VERSION  ?=
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
# make image: the manager's OCI image, without Docker, in bin/image (an OCI
# layout, and meshaddon-manager.tar for docker load or crane push).
image:
	$(GO) run ./hack/image --revision '$(REVISION)' $(if $(VERSION),--version $(VERSION))
# make dist: the CLI's archives for linux and darwin on amd64 and arm64, their
# sha256 checksums and the krew manifest, in bin/dist.
dist:
	$(GO) run ./hack/dist $(if $(VERSION),--version $(VERSION))
