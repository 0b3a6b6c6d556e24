# SneakerStop — the two commands you need are `make run` and `make test`.
SHELL := /usr/bin/env bash

.PHONY: run test bench chaos lint fmt build check-deploy apply deploy destroy help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## Build and run the whole marketplace at http://127.0.0.1:8080 (ctrl-c stops it)
	@scripts/run.sh

test: ## Formatting, clippy -D warnings, and every test against real PostgreSQL
	@scripts/test.sh

bench: ## Release build under the standard load scenarios; results in bench/results/
	@scripts/bench.sh

chaos: ## Crash each server twice and the broker once under load; report the pauses, check nothing was lost or doubled
	@scripts/chaos.sh

lint: ## Formatting check and clippy only
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

build: ## Build everything (debug)
	cargo build --workspace --all-targets

check-deploy: ## Render, validate and lint the Kubernetes, Terraform and Docker files (offline)
	@scripts/check-deploy.sh

ENV ?= dev
TF := terraform -chdir=deploy/terraform

apply: ## Apply one environment to its cluster: make apply ENV=dev|stage|prod (its own workspace and state; reads deploy/terraform/$(ENV).tfvars)
	@test -f deploy/terraform/$(ENV).tfvars || { echo "create deploy/terraform/$(ENV).tfvars from $(ENV).tfvars.example"; exit 1; }
	$(TF) init -input=false
	$(TF) workspace select -or-create $(ENV)
	$(TF) apply -var-file=$(ENV).tfvars

deploy: apply ## The same as make apply

destroy: ## Remove one environment: make destroy ENV=dev|stage|prod (only that workspace's state is touched)
	@test -f deploy/terraform/$(ENV).tfvars || { echo "deploy/terraform/$(ENV).tfvars is missing"; exit 1; }
	$(TF) init -input=false
	$(TF) workspace select $(ENV)
	$(TF) destroy -var-file=$(ENV).tfvars
