# Kennel's front door. `make demo` runs the main job on a local cluster; `make test`
# runs everything (.ci/run calls it).
SHELL := /bin/bash
.DEFAULT_GOAL := help
CLUSTER_DIR := e2e/.cluster
export KUBECONFIG := $(CURDIR)/$(CLUSTER_DIR)/kubeconfig

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: demo
demo: ## The main job: local cluster, operator, and a sandboxed agent that tries to do harm
	e2e/demo/demo.sh

.PHONY: cluster-up
cluster-up: ## Start the local single-node cluster (idempotent)
	e2e/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove everything it created
	e2e/cluster/down.sh

.PHONY: test-cluster
test-cluster: cluster-up ## End-to-end tests of the local cluster itself
	cargo test -p kennel-e2e --test cluster -- --test-threads=2

.PHONY: bench
bench: cluster-up ## Benchmark against the bare-Pod floor (kwok nodes, then gVisor); writes docs/bench/
	e2e/bench/run.sh

.PHONY: deploy
deploy: cluster-up ## Build the operator image, import it, helm upgrade --install charts/kennel
	charts/deploy-local.sh $(DEPLOY_ARGS)

.PHONY: test
test: ## Everything: unit tests, then the cluster, e2e tests, and tear-down
	e2e/run-all-tests.sh
