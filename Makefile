# churn-mlops: every target works in both runtimes.
#   RUNTIME=native  : services as processes under supervisord (no Docker engine needed)  -- native/
#   RUNTIME=compose : docker-compose-model-registry.yml + docker-compose-serve.yml
# RUNTIME is detected (a reachable Docker engine -> compose) and can be overridden: make up RUNTIME=native
# env=local|cloud picks .env.local or .env.cloud (cloud = real AWS, no endpoint override).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

env ?= local
RUNTIME ?= $(shell docker info >/dev/null 2>&1 && echo compose || echo native)
PYTHON_BIN ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(shell command -v uv 2>/dev/null || echo $(PYTHON_BIN) -m uv)
TRIALS ?=
STATE_DIR ?= .mlops
DATA ?=
PYTEST_ARGS ?=

ENV_FILE := .env.$(env)
export ENV := $(env)
# Control-plane secrets (mlops/control_plane.py, docs/security.md): MLflow's users, Prefect's auth string, the drift
# service's key, Redis, MongoDB and Grafana passwords. env=local: random ones made once in $(STATE_DIR)/secrets.env
# (mode 0600; `NAME ?= value`, so a value in the environment wins); env=cloud: the environment, else the VM's
# CLOUD_SECRETS_FILE written once by its operator (same format, never in the repo), and every service refuses to
# start without them. Exported to every command below, both runtimes (compose: `${NAME:?}` in the compose files).
SECRET_NAMES := MLFLOW_ADMIN_PASSWORD MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD MLFLOW_READER_PASSWORD \
	PREFECT_API_AUTH_STRING DRIFT_SERVICE_KEY REDIS_PASSWORD MONGO_PASSWORD GRAFANA_ADMIN_PASSWORD
ifeq ($(env),local)
SECRETS_FILE := $(STATE_DIR)/secrets.env
$(shell $(PYTHON_BIN) -m mlops.local_secrets $(SECRETS_FILE))
include $(SECRETS_FILE)
else
CLOUD_SECRETS_FILE ?= $(HOME)/.config/churn-mlops/secrets.env
-include $(CLOUD_SECRETS_FILE)
endif
export $(SECRET_NAMES)
# ------------------------------------------------------------------------------------------------ compose tooling
# DOCKER: the client (its `build` must speak BuildKit: buildx, or Debian's docker.io client). COMPOSE: `docker compose`
# (v2) when the client has it, else `docker-compose` (v1, which has no `up --wait`: docker/wait-healthy.sh waits for
# both). REGISTRY_FILES / SERVE_FILES: the compose files of each side; add an override file after the main one.
DOCKER ?= docker
ifeq ($(RUNTIME),compose)
ifndef COMPOSE
COMPOSE := $(shell if $(DOCKER) compose version >/dev/null 2>&1; then echo "$(DOCKER) compose"; \
	elif command -v docker-compose >/dev/null 2>&1; then echo docker-compose; else echo "$(DOCKER) compose"; fi)
endif
endif
export DOCKER
export DOCKER_BUILDKIT := 1
export COMPOSE_DOCKER_CLI_BUILD := 1
REGISTRY_FILES ?= docker-compose-model-registry.yml
SERVE_FILES ?= docker-compose-serve.yml
REGISTRY_PROJECT := churn-mlops-registry
SERVE_PROJECT := churn-mlops-serve
REGISTRY_STACK = $(COMPOSE) --env-file $(ENV_FILE) -p $(REGISTRY_PROJECT) $(addprefix -f ,$(REGISTRY_FILES))
# the business simulators (compose profile "simulators") run with env=local only: a cloud deploy serves real clients
SERVE_PROFILES = $(if $(filter cloud,$(env)),,--profile simulators)
# the backups volume is external to both projects (reset_all keeps it): created before the serving side's file is used
BACKUP_VOLUME := churn-mlops-backups
SERVE_STACK = $(DOCKER) volume create $(BACKUP_VOLUME) >/dev/null && \
	$(COMPOSE) --env-file $(ENV_FILE) -p $(SERVE_PROJECT) $(addprefix -f ,$(SERVE_FILES)) $(SERVE_PROFILES)
# compose: the Spark cluster's services (profile "spark", started by `make spark-cluster` only) and their base image,
# the shared one with Debian's JRE and the lock file's `spark` extra; `down` and `reset_all` name the profile so they
# remove those containers too.
SPARK_STACK = $(SERVE_STACK) --profile spark
BUILD_SPARK_BASE = $(DOCKER) build -f Dockerfile.base --build-arg JRE_PACKAGE=openjdk-17-jre-headless \
	--build-arg "SYNC_EXTRAS=--extra spark" -t churn-mlops/base-spark:$(IMAGE_TAG) .
SPARK_WORKERS ?= 2
# compose: a restore's MongoDB/Redis dumps go back once those two run, before anything else of the side starts
# (STATE_SERVICES: an override file without MongoDB, as the compose test's, names redis alone)
STATE_SERVICES ?= mongo redis
SERVE_STATE_FIRST = $(SERVE_STACK) build backup && $(SERVE_STACK) up -d $(STATE_SERVICES) && \
	$(WAIT_HEALTHY) $(SERVE_PROJECT) $(STATE_SERVICES) && \
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) backup python -m mlops.backup finish-restore
WAIT_HEALTHY := docker/wait-healthy.sh
# `run` / `exec` get a TTY only when make has one (a progress bar for a person; CI and tests have none)
NO_TTY := $(shell test -t 0 || echo -T)
# compose: the shared base image every image of ours builds FROM (Dockerfile.base: uv.lock, non-root user)
IMAGE_TAG ?= local
export IMAGE_TAG
BUILD_BASE = $(DOCKER) build -f Dockerfile.base -t churn-mlops/base:$(IMAGE_TAG) .
# native needs the venv and the Debian packages; compose needs only docker
RUNTIME_DEPS = $(if $(filter native,$(RUNTIME)),install,docker-engine)
RUNTIME_CLI := $(PY) -m native.runtime --env $(env)
SERVE_PROGRAMS := predict-api api-gateway serve-kinesis drift-service prometheus alertmanager alert-receiver
# compose: replicas of serve-kinesis, one consumer group (`make up KINESIS_CONSUMERS=3`); the setting's default.
# Natively supervisord starts KINESIS_CONSUMERS processes from the settings (.env.<env> or the environment).
KINESIS_CONSUMERS ?= 2
# compose: replicas of predict-api behind the api-gateway service (`make up API_REPLICAS=3`); natively API_REPLICAS
# from the settings, like KINESIS_CONSUMERS.
API_REPLICAS ?= 1

.PHONY: spark-cluster spark-cluster-stop prune-trials help install system-packages test-packages up down setup-model-registry init_aws train apply-model-train-flow \
	setup-model-serve start-serve stop-serve apply-prediction-reporting report archive backup backups restore snapshot-from-production batch quarantine outcomes materialize promote \
	rollback status logs \
	test run_tests lint format bench bench-packages reset_all docker-engine docker-engine-start images-offline

help: ## show every target
	@echo "churn-mlops (RUNTIME=$(RUNTIME), env=$(env))"
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-28s\033[0m %s\n", $$1, $$2}'

# ------------------------------------------------------------------------------------------------ setup
# --compile-bytecode: the packages' .pyc files are written once at install (~40 s), as in the images. Where
# PYTHONDONTWRITEBYTECODE is set (these machines set it) nothing else writes them, and every Python process compiled
# mlflow, prefect and pandas from source again: `import mlflow, prefect` took 11 s instead of 5.
$(VENV)/.installed: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON_BIN) -m uv --version >/dev/null 2>&1 || $(PYTHON_BIN) -m pip install --quiet uv
	$(UV) sync --frozen --all-extras --compile-bytecode
	@touch $@

install: $(VENV)/.installed system-packages $(if $(filter compose,$(RUNTIME)),docker-engine) ## install Python dependencies (uv, locked) and Debian packages; RUNTIME=compose: the Docker engine too

# Debian packages as `program=package` pairs: installed when the program is missing and make runs as root, else the
# one apt-get command is printed.
RUNTIME_PACKAGES := prometheus=prometheus prometheus-alertmanager=prometheus-alertmanager nginx=nginx redis-server=redis-server chromium=chromium
DOCKER_PACKAGES := dockerd=docker.io docker-compose=docker-compose
TEST_PACKAGES := $(DOCKER_PACKAGES) debootstrap=debootstrap
BENCH_PACKAGES := wrk=wrk
define apt_install
	@missing=""; \
	for pair in $(1); do \
		program=$${pair%%=*}; package=$${pair##*=}; \
		command -v $$program >/dev/null 2>&1 || [ -x /usr/sbin/$$program ] || missing="$$missing $$package"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = "0" ]; then \
		echo "installing Debian packages:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else \
		echo "missing Debian packages:$$missing -- run: sudo apt-get install -y$$missing"; \
	fi
endef

system-packages: ## install the Debian packages the native runtime needs (as root): prometheus, nginx, redis, chromium
	$(call apt_install,$(RUNTIME_PACKAGES))

test-packages: ## install what the compose end-to-end test needs (as root): docker.io, docker-compose, debootstrap
	$(call apt_install,$(TEST_PACKAGES))

docker-engine: ## compose: install docker.io and a compose tool (as root) and start the engine when none answers
	@$(DOCKER) info >/dev/null 2>&1 || $(MAKE) --no-print-directory docker-engine-start

docker-engine-start:
	$(call apt_install,$(DOCKER_PACKAGES))
	docker/engine.sh start

images-offline: ## only where no container registry is reachable: build stand-ins of the third-party images we use
	docker/stand-in-images/build.sh

# ------------------------------------------------------------------------------------------------ the whole platform
up: install ## native: start everything, seed data, train (if needed), serve, answer a request
	$(MAKE) --no-print-directory setup-model-registry
	$(PY) -m mlops.backup --env $(env) finish-restore
	$(MAKE) --no-print-directory init_aws
	$(PY) -m model_orchestration.train_flow --env $(env) --if-missing $(if $(TRIALS),--max-evals $(TRIALS))
	$(RUNTIME_CLI) up train-deployment batch-deployment
	$(MAKE) --no-print-directory setup-model-serve
	$(MAKE) --no-print-directory apply-prediction-reporting
	$(PY) -m native.smoke --env $(env)

down: ## stop everything `up` started (state is kept; reset_all removes it)
ifeq ($(RUNTIME),compose)
	$(SPARK_STACK) down
	$(REGISTRY_STACK) down
else
	@$(RUNTIME_CLI) down
endif

status: ## native: each program's state and log file
	@$(RUNTIME_CLI) status

# ------------------------------------------------------------------------------------------------ model registry side
setup-model-registry: $(RUNTIME_DEPS) ## start the S3/Kinesis emulator, MLflow (:5051) and Prefect (:4200)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(REGISTRY_STACK) up -d --build moto mlflow prefect
	$(WAIT_HEALTHY) $(REGISTRY_PROJECT) moto mlflow prefect
else
	$(RUNTIME_CLI) up moto mlflow prefect
endif

init_aws: ## create bucket + Kinesis streams, load clean data into the feature store (DATA=path.csv, else generated)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(REGISTRY_STACK) build train-deployment
	$(REGISTRY_STACK) run --rm $(NO_TTY) $(if $(DATA),-v $(abspath $(DATA)):/data/$(notdir $(DATA)):ro) train-deployment \
		python -m mlops.init_aws $(if $(DATA),--data /data/$(notdir $(DATA)))
else
	$(PY) -m mlops.init_aws --env $(env) $(if $(DATA),--data $(DATA))
endif

train: ## run the training flow once in the foreground with a progress bar (TRIALS=n; TUNING_PARALLELISM=n on the Spark cluster)
ifeq ($(RUNTIME),compose)
ifneq ($(filter-out 0 1,$(TUNING_PARALLELISM)),)
	$(BUILD_SPARK_BASE)
	$(REGISTRY_STACK) --profile spark build train-spark
	$(REGISTRY_STACK) --profile spark run --rm $(NO_TTY) -e TUNING_PARALLELISM=$(TUNING_PARALLELISM) train-spark \
		python -m model_orchestration.train_flow $(if $(TRIALS),--max-evals $(TRIALS))
else
	$(BUILD_BASE)
	$(REGISTRY_STACK) build train-deployment
	$(REGISTRY_STACK) run --rm $(NO_TTY) train-deployment python -m model_orchestration.train_flow $(if $(TRIALS),--max-evals $(TRIALS))
endif
else
	$(PY) -m model_orchestration.train_flow --env $(env) $(if $(TRIALS),--max-evals $(TRIALS))
endif

apply-model-train-flow: ## deploy the training flow on its interval schedule and start one run now
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(REGISTRY_STACK) up -d --build train-deployment
	$(WAIT_HEALTHY) $(REGISTRY_PROJECT) train-deployment
	$(REGISTRY_STACK) exec $(NO_TTY) train-deployment python -m model_orchestration.deployments trigger
else
	$(RUNTIME_CLI) up train-deployment
	$(PY) -m model_orchestration.deployments --env $(env) trigger
endif

promote: ## judge the challenger against the champion and move `champion` if the gate passes (APPROVE=<version>)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(REGISTRY_STACK) build train-deployment
	$(REGISTRY_STACK) run --rm $(NO_TTY) train-deployment python -m model_orchestration.promote_flow \
		$(if $(APPROVE),--approve $(APPROVE)) $(if $(ALLOW_SPEC_CHANGE),--allow-spec-change)
else
	$(PY) -m model_orchestration.promote_flow --env $(env) $(if $(APPROVE),--approve $(APPROVE)) \
		$(if $(ALLOW_SPEC_CHANGE),--allow-spec-change)
endif

rollback: ## point `champion` back at the version it replaced (from the promotion audit log)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(REGISTRY_STACK) build train-deployment
	$(REGISTRY_STACK) run --rm $(NO_TTY) train-deployment python -m model_orchestration.promote_flow --rollback
else
	$(PY) -m model_orchestration.promote_flow --env $(env) --rollback
endif

# ------------------------------------------------------------------------------------------------ serving side
setup-model-serve: ## serve the model chosen by RUN_ID (HTTP :9696, Kinesis) with its monitoring
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STATE_FIRST)
	$(SERVE_STACK) up -d --build --scale serve-kinesis=$(KINESIS_CONSUMERS) --scale predict-api=$(API_REPLICAS)
	$(WAIT_HEALTHY) $(SERVE_PROJECT)
else
	$(RUNTIME_CLI) up $(SERVE_PROGRAMS)
endif

start-serve: ## start the serving side again (after stop-serve or a RUN_ID change)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STATE_FIRST)
	$(SERVE_STACK) up -d --build --scale serve-kinesis=$(KINESIS_CONSUMERS) --scale predict-api=$(API_REPLICAS)
	$(WAIT_HEALTHY) $(SERVE_PROJECT)
else
	$(RUNTIME_CLI) up $(SERVE_PROGRAMS)
endif

stop-serve: ## stop the serving side, keep the registry side running
ifeq ($(RUNTIME),compose)
	$(SPARK_STACK) down
else
	$(RUNTIME_CLI) stop $(SERVE_PROGRAMS)
endif

spark-cluster: ## a Spark standalone master + SPARK_WORKERS workers (natively spark://127.0.0.1:7077; compose spark://spark-master:7077)
ifeq ($(RUNTIME),compose)
	$(BUILD_SPARK_BASE)
	$(SPARK_STACK) up -d --build --scale spark-worker=$(SPARK_WORKERS) spark-master spark-worker
	$(WAIT_HEALTHY) $(SERVE_PROJECT) spark-master spark-worker
else
	$(RUNTIME_CLI) up spark-master spark-worker
endif

spark-cluster-stop: ## stop the Spark cluster, leave the rest running
ifeq ($(RUNTIME),compose)
	$(SPARK_STACK) rm --stop --force spark-worker spark-master
else
	$(RUNTIME_CLI) stop spark-worker spark-master
endif

apply-prediction-reporting: ## deploy the drift report flow (every 3 h) and the reports server (:8888)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STACK) up -d --build report-deployment
	$(REGISTRY_STACK) up -d nginx
	$(WAIT_HEALTHY) $(SERVE_PROJECT) report-deployment
	$(WAIT_HEALTHY) $(REGISTRY_PROJECT) nginx
else
	$(RUNTIME_CLI) up report-deployment nginx
endif

report: ## write a drift report now from the prediction log
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STACK) build report-deployment
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) report-deployment python -m reporting.create_report
else
	$(PY) -m reporting.create_report --env $(env)
endif

archive: ## archive predictions, outcomes and settlements past PREDICTION_RETENTION_DAYS to S3, then delete them (DRY_RUN=1: count)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STACK) build report-deployment
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) report-deployment python -m mlops.archive $(if $(DRY_RUN),--dry-run)
else
	$(PY) -m mlops.archive --env $(env) $(if $(DRY_RUN),--dry-run)
endif

prune-trials: ## delete, then purge, MLflow trial runs older than TRIAL_RETENTION_DAYS (DRY_RUN=1: count)
ifeq ($(RUNTIME),compose)
	$(REGISTRY_STACK) exec -T -e MLFLOW_TRACKING_URI=http://127.0.0.1:5051 -e MLFLOW_BACKEND_STORE_FILE=/mlflow/mlflow.db \
		mlflow python -m mlops.trial_retention $(if $(DRY_RUN),--dry-run)
else
	$(PY) -m mlops.trial_retention --env $(env) $(if $(DRY_RUN),--dry-run)
endif

snapshot-from-production: ## settled production predictions (log + archive) -> a new feature-store snapshot (MIN_ROWS=n)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STACK) build report-deployment
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) report-deployment python -m mlops.production_data $(if $(MIN_ROWS),--min-rows $(MIN_ROWS))
else
	$(PY) -m mlops.production_data --env $(env) $(if $(MIN_ROWS),--min-rows $(MIN_ROWS))
endif

backup: ## back up all state while the platform runs (TO=<folder|s3://bucket/prefix>, default BACKUP_LOCATION)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STACK) build backup
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) backup python -m mlops.backup create $(if $(TO),--to $(TO))
else
	$(PY) -m mlops.backup --env $(env) create $(if $(TO),--to $(TO))
endif

restore: ## restore a backup with the platform down: make restore FROM=<stamp|location/stamp> [FORCE=1]
	@test -n "$(FROM)" || { echo "usage: make restore FROM=<stamp, or backup folder or s3 prefix/stamp> [FORCE=1] (list: make backups)"; exit 2; }
ifeq ($(RUNTIME),compose)
	@running="$$(for project in $(SERVE_PROJECT) $(REGISTRY_PROJECT); do \
		$(DOCKER) ps --filter label=com.docker.compose.project=$$project --format '{{.Label "com.docker.compose.service"}}'; \
		done | grep -vx moto | sort -u | tr '\n' ' ' || true)"; \
	if [ -n "$$running" ]; then echo "restore: $$running running: stop the platform first (make down), then restore" >&2; exit 1; fi
	$(BUILD_BASE)
	$(REGISTRY_STACK) up -d moto
	$(WAIT_HEALTHY) $(REGISTRY_PROJECT) moto
	$(SERVE_STACK) build backup
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) backup python -m mlops.backup restore $(FROM) $(if $(FORCE),--force)
	@echo "compose: then make setup-model-registry init_aws setup-model-serve (MongoDB and Redis take their dumps first)"
else
	$(PY) -m mlops.backup --env $(env) restore $(FROM) $(if $(FORCE),--force)
endif

backups: ## list the complete backups of BACKUP_LOCATION, oldest first
ifeq ($(RUNTIME),compose)
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) backup python -m mlops.backup list
else
	$(PY) -m mlops.backup --env $(env) list
endif

outcomes: ## load observed outcomes (id, label[, date]) and settle them against the prediction log: make outcomes FILE=...
	@test -n "$(FILE)" || { echo "usage: make outcomes FILE=<outcomes.csv> (columns: CLIENTNUM or request_id, Attrition_Flag[, date])"; exit 2; }
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STACK) build report-deployment
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) -v $(abspath $(FILE)):/data/$(notdir $(FILE)):ro report-deployment \
		python -m mlops.ingest_outcomes /data/$(notdir $(FILE))
else
	$(PY) -m mlops.ingest_outcomes --env $(env) $(FILE)
endif

materialize: ## copy the latest feature row of every customer to the online store (scoring by id)
ifeq ($(RUNTIME),compose)
	$(BUILD_BASE)
	$(SERVE_STACK) build report-deployment
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) report-deployment python -m mlops.materialize
else
	$(PY) -m mlops.materialize --env $(env)
endif

quarantine: ## what the stores refused for its content: make quarantine [ACTION=list|show|replay]
	$(PY) -m mlops.quarantine $(or $(ACTION),list) --env $(env)

batch: ## score a folder or S3 prefix of account files now: make batch INPUT=... OUTPUT=... [ENGINE=spark]
	@test -n "$(INPUT)" -a -n "$(OUTPUT)" || { echo "usage: make batch INPUT=<folder|s3://bucket/prefix> OUTPUT=<folder|s3://...> [ENGINE=spark]"; exit 2; }
ifeq ($(RUNTIME),compose)
ifeq ($(ENGINE),spark)
	$(SPARK_STACK) run --rm --no-deps $(NO_TTY) spark-master python -m batch score $(INPUT) $(OUTPUT) --no-progress \
		--engine spark --spark-master spark://spark-master:7077
else
	$(BUILD_BASE)
	$(SERVE_STACK) build batch-deployment
	$(SERVE_STACK) run --rm --no-deps $(NO_TTY) batch-deployment python -m batch score $(INPUT) $(OUTPUT) --no-progress
endif
else
	$(PY) -m batch score $(INPUT) $(OUTPUT) $(if $(ENGINE),--engine $(ENGINE))
endif

# ------------------------------------------------------------------------------------------------ quality
test: install test-packages ## run the whole test suite (unit, integration on real servers, end to end)
	$(PY) -m pytest $(PYTEST_ARGS)

run_tests: test ## alias of test (the original design's name)

lint: install ## ruff check + ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## ruff format + fixable lint fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Short defaults: every benchmark once, a few minutes in all; each prints its own command for a longer run.
BENCH_RUNS := \
	"bench.bench_http --seconds 5 --load-seconds 5 --rounds 1" \
	"bench.bench_train --trials 10 --rows 5000" \
	"bench.bench_batch_files --files 1000 --subset 500 --no-spark" \
	"bench.bench_batch --rows 20000 --repeats 3" \
	"bench.bench_by_id --customers 2000 --requests 1500 --max-seconds 5 --rounds 1" \
	"bench.bench_shadow --requests 1500 --max-seconds 5 --load-seconds 5" \
	"bench.bench_drift --runs 3" \
	"bench.bench_outcomes --predictions 20000 --file-rows 20000 --repeats 1" \
	"bench.bench_kinesis --count 500" \
	"bench.bench_kinesis_group --records 10000 --rounds 1" \
	"bench.bench_gateway --requests 1000 --rounds 1" \
	"bench.bench_scale_out --files 4000 --trials 6 --rounds 1 --sections batch,tuning" \
	"bench.bench_soak --seconds 20 --interval 10"

bench: install bench-packages ## run every benchmark in bench/ with short defaults (prints figures; never part of the tests)
	@for run in $(BENCH_RUNS); do echo "== python -m $$run"; $(PY) -m $$run || exit 1; done

bench-packages: ## install what the benchmarks need (as root): Debian's wrk
	$(call apt_install,$(BENCH_PACKAGES))

reset_all: ## stop everything and delete all state (compose volumes; natively STATE_DIR, default .mlops/)
ifeq ($(RUNTIME),compose)
	$(SPARK_STACK) down -v
	$(REGISTRY_STACK) down -v
else
	-@test -x $(PY) && $(RUNTIME_CLI) down
	rm -rf $(STATE_DIR)
endif
