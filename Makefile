# Development workflow. `make help` lists the targets.
SHELL := /bin/bash
CARGO ?= cargo
# Where the end-to-end tests leave the program's API requests (tests/support/lib.rs).
E2E_REQUESTS := $(or $(CARGO_TARGET_DIR),target)/e2e-requests

.PHONY: help build test unit lint deny fmt bench demo crds update-crds chart image-check

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build every crate and the binaries
	$(CARGO) build --workspace --all-targets

# The order matters: tests/chart.rs (test = false, so not in the workspace
# run) reads the request logs the other end-to-end tests leave in
# $(E2E_REQUESTS) and the chart validate.sh renders into target/chart/.
test: ## Run every test: unit, kube-emulator, end-to-end, chart validation, chart vs program
	rm -rf $(E2E_REQUESTS)
	$(CARGO) nextest run --workspace --no-fail-fast
	$(CARGO) test --workspace --doc
	bash hack/chart/validate.sh --apply
	$(CARGO) nextest run -p e2e --test chart --no-capture

# --all-targets leaves out test = false targets, hence tests/chart.rs apart.
lint: ## Formatting check and clippy with warnings denied
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p e2e --test chart -- -D warnings

deny: ## cargo deny check: advisories, licences, duplicate and banned crates, sources
	bash hack/deny.sh

fmt: ## Format the code
	$(CARGO) fmt --all

image-check: ## Build the binary as the Dockerfile does and check it fits the image (no Docker engine needed)
	bash hack/image-check.sh

bench: ## Criterion benchmarks: the request hot path, the index at 1,000-100,000 Warehouses
	$(CARGO) bench -p kargo-harbor-receiver --bench hot_path

demo: ## Local demo: emulated API server, the receiver, a Harbor push
	bash hack/demo.sh

crds: ## Print the project's generated CRDs
	@$(CARGO) run -q -p kargo-harbor-receiver -- crds

update-crds: ## Rewrite charts/kargo-harbor-receiver/files/crds.yaml from crates/kargo-api and crates/registration-api
	UPDATE_CRDS=1 $(CARGO) test -q -p e2e --test crds
