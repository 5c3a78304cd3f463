# syntax=docker/dockerfile:1
# saywell, CUDA image: the same server on an NVIDIA CUDA runtime with a CUDA build of torch, meant for the
# `neural` engine profile. That profile needs a model folder (SAYWELL_MODEL_DIR, a mounted volume) which saywell
# does not ship yet (engine/profiles/neural/README.md), so this image serves the `cpu` profile by default, which
# runs on the CPU even here. Set SAYWELL_PROFILE=neural and SAYWELL_MODEL_DIR with a model folder. No GPU
# per-stream numbers exist yet (deploy/PRODUCTION.md, "Sizing").
#
#   docker build -f deploy/docker/cuda.Dockerfile -t saywell:cuda .      # from the repository root
#   docker run --rm --gpus all -p 50051:50051 -p 9464:9464 saywell:cuda
#
# Run it with the NVIDIA container toolkit (Kubernetes: the NVIDIA device plugin, nvidia.com/gpu). As for the
# CPU image, no container daemon runs where this project is developed: tests/deploy lints this file with
# hadolint; it has never been built or run on a GPU by the project's tests.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

FROM ${CUDA_IMAGE} AS build
# Ubuntu 22.04's Python is 3.10, the oldest saywell supports. Unpinned: the CUDA base image fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/saywell
ENV PATH=/opt/saywell/bin:$PATH
# As in `make install`: torch first and pinned, then saywell[server]; here the CUDA build of torch, from the
# PyTorch index matching the base image's CUDA (the server extra's torch==2.13.0 accepts the +cu build).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==2.13.0"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto proto
COPY server server
COPY client client
COPY engine engine
RUN pip install --no-cache-dir "/src[server]"
ENV SAYWELL_CACHE_DIR=/opt/saywell/cache
RUN python -c "from saywell.engine.weights import whisper_model_dir; whisper_model_dir('tiny.en'); whisper_model_dir('base')"

FROM ${CUDA_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 saywell \
    && useradd --system --uid 10001 --gid saywell --home-dir /nonexistent --shell /usr/sbin/nologin saywell
COPY --from=build /opt/saywell /opt/saywell
COPY deploy/docker/healthcheck.py /opt/saywell/healthcheck.py
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
EXPOSE 50051 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/saywell/healthcheck.py"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["saywell-server"]
