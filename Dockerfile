# Hark images. Two targets, one Dockerfile:
#
#   docker build -t hark:0.1.0 .                           # CPU image (target `runtime`, the default)
#   docker build --target cuda -t hark:0.1.0-cuda .        # NVIDIA GPU image (CUDA 12 + cuDNN 9)
#
# Both run `hark` as a non-root user (uid 10001) with the data directory at /data and
# models at /models (mount volumes there); the default command serves the API. Workers
# use the same image: `docker run hark:0.1.0 worker --queues small`.
#
# torch (only used by the speaker encoder for diarization) comes from PyTorch's CPU wheel
# index in both images: PyPI's Linux torch wheels pull in several GiB of CUDA libraries
# that Hark does not need, because Whisper runs on CTranslate2, which uses the CUDA and
# cuDNN libraries of the CUDA base image. Override with
# `--build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128` to get a CUDA torch.
# Details: deploy/README.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

# ---------------------------------------------------------------------------------------
# builder: every wheel installed into a virtual environment at /opt/hark, which the
# runtime stage copies as a whole (no compilers or pip caches in the final image).
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/hark \
    && /opt/hark/bin/pip install "pip==26.3"
ENV PATH=/opt/hark/bin:$PATH
# torch first and on its own: the largest download, and independent of Hark's sources,
# so this layer stays cached while the code changes.
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A regular (not editable) install: the venv must not point back into /src; versions come
# from pyproject.toml (DL3013 wants a pin, but this is the project itself). Resemblyzer
# goes in with --no-deps, as in the README: its declared requirements do not install on
# current Pythons and the `diarization` extra provides what it really needs.
# hadolint ignore=DL3013
RUN pip install ".[all,scaled]" \
    && pip install --no-deps "resemblyzer==0.1.4"

# ---------------------------------------------------------------------------------------
# cuda-builder: the same virtual environment, built against the CUDA image's Python 3.11
# (the venv's interpreter is a link to the system Python, so builder and runtime must
# share the base image).
FROM ${CUDA_IMAGE} AS cuda-builder
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Ubuntu's own packages, versions follow the base image's release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/hark \
    && /opt/hark/bin/pip install "pip==26.3"
ENV PATH=/opt/hark/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# hadolint ignore=DL3013
RUN pip install ".[all,scaled]" \
    && pip install --no-deps "resemblyzer==0.1.4"

# ---------------------------------------------------------------------------------------
# cuda: the GPU image. Build it with `docker build --target cuda .`; run it with
# `--gpus all` (Compose: deploy.resources.reservations.devices; Kubernetes:
# resources.limits["nvidia.com/gpu"]). Whisper then runs in float16 on the GPU.
FROM ${CUDA_IMAGE} AS cuda
ENV DEBIAN_FRONTEND=noninteractive
# libgomp1: OpenMP runtime for CTranslate2 and onnxruntime. No ffmpeg: PyAV's wheels
# bundle their own FFmpeg libraries.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hark \
    && useradd --system --uid 10001 --gid hark --create-home --home-dir /home/hark \
        --shell /usr/sbin/nologin hark \
    && mkdir -p /data /models \
    && chown hark:hark /data /models
COPY --from=cuda-builder /opt/hark /opt/hark
# NUMBA_CACHE_DIR: librosa's numba functions cache compiled code; the venv is read-only
# for the hark user (and the whole root filesystem may be, on Kubernetes).
ENV PATH=/opt/hark/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    HARK_DATA_DIR=/data \
    HARK_MODEL_DIR=/models \
    HARK_DEVICE=cuda \
    HARK_LOG_FORMAT=json
WORKDIR /home/hark
USER 10001:10001
EXPOSE 8000
# The API's liveness; worker containers replace it (Compose and Kubernetes files do).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HARK_PORT', '8000') + '/health/live', timeout=4)"]
ENTRYPOINT ["hark"]
CMD ["serve", "--host", "0.0.0.0"]

# ---------------------------------------------------------------------------------------
# runtime: the CPU image, and the default target (last stage).
FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: OpenMP runtime for CTranslate2 and onnxruntime. No ffmpeg: PyAV's wheels
# bundle their own FFmpeg libraries.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 hark \
    && useradd --system --uid 10001 --gid hark --create-home --home-dir /home/hark \
        --shell /usr/sbin/nologin hark \
    && mkdir -p /data /models \
    && chown hark:hark /data /models
COPY --from=builder /opt/hark /opt/hark
ENV PATH=/opt/hark/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    HARK_DATA_DIR=/data \
    HARK_MODEL_DIR=/models \
    HARK_LOG_FORMAT=json
WORKDIR /home/hark
USER 10001:10001
EXPOSE 8000
# The API's liveness; worker containers replace it (Compose and Kubernetes files do).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HARK_PORT', '8000') + '/health/live', timeout=4)"]
ENTRYPOINT ["hark"]
CMD ["serve", "--host", "0.0.0.0"]
