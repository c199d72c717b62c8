# syntax=docker/dockerfile:1.7
#
# Two images from one file:
#   docker build --target gateway -t textgenshap-gateway .   # FastAPI gateway, no torch (~200 MB)
#   docker build --target worker  -t textgenshap-worker  .   # CUDA worker: torch + flash-attn
#
# The gateway never imports torch (the `serve` command without a worker), so its image installs
# the project's core dependencies only. It needs TEXTGENSHAP_REDIS_URL: the embedded mode
# (no Redis) runs a worker in-process and that needs the worker image. It listens on
# 0.0.0.0 and so refuses to start without TEXTGENSHAP_API_KEYS (sha256 digests of the API
# keys: python -m service.auth KEY; docs/deploy.md section 3).
#
# Pinned GPU stack (flash-attn publishes wheels per torch minor, CUDA major, C++ ABI and Python):
#   CUDA 12.6 runtime + cuDNN 9 (Ubuntu 22.04), Python 3.11,
#   torch 2.7.1+cu126 (PyTorch CUDA index; built with the C++11 ABI),
#   flash-attn 2.8.3 wheel "cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64".
# Change all of them together: a flash-attn wheel for another torch fails at import with an
# undefined symbol. FLASH_ATTN_WHEEL="" skips flash-attn (the engine then uses PyTorch SDPA).

ARG PYTHON_VERSION=3.11
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04
ARG TORCH_VERSION=2.7.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126
ARG FLASH_ATTN_WHEEL=https://github.com/Dao-AILab/flash-attention/releases/download/v2.8.3/flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl

# ---------------------------------------------------------------------------------------------
# gateway: python slim, core dependencies only.
FROM python:${PYTHON_VERSION}-slim AS gateway

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 textgenshap \
    && useradd --system --uid 10001 --gid textgenshap --create-home textgenshap

WORKDIR /app
COPY pyproject.toml ./
COPY service ./service
COPY worker ./worker
# No extras: numpy, fastapi, uvicorn, redis, prometheus-client, pydantic - and no torch.
RUN pip install --no-compile . \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"

USER textgenshap
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)"]
CMD ["textgenshap", "serve", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------------------------------------
# worker: CUDA runtime, Python 3.11 in a venv, torch CUDA build, flash-attn, project[worker,gpu].
FROM ${CUDA_IMAGE} AS worker

ARG PYTHON_VERSION
ARG TORCH_VERSION
ARG TORCH_INDEX_URL
ARG FLASH_ATTN_WHEEL

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Ubuntu 22.04 ships Python 3.10; the deadsnakes PPA has maintained 3.11 builds.
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common gpg-agent \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get update \
    && apt-get install -y --no-install-recommends \
        python${PYTHON_VERSION} python${PYTHON_VERSION}-venv ca-certificates \
    && apt-get purge -y software-properties-common gpg-agent \
    && apt-get autoremove -y \
    && rm -rf /var/lib/apt/lists/* \
    && python${PYTHON_VERSION} -m venv /opt/venv

RUN groupadd --system --gid 10001 textgenshap \
    && useradd --system --uid 10001 --gid textgenshap --create-home textgenshap \
    && mkdir -p /models \
    && chown textgenshap:textgenshap /models

# torch first, from the CUDA index, then pinned by a constraint so that no later install
# swaps it for another build (which would break the flash-attn wheel's ABI).
RUN pip install --upgrade pip \
    && pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
    && echo "torch==${TORCH_VERSION}" > /opt/constraints.txt \
    && if [ -n "${FLASH_ATTN_WHEEL}" ]; then \
         pip install --constraint /opt/constraints.txt "${FLASH_ATTN_WHEEL}"; \
       fi

WORKDIR /app
COPY pyproject.toml ./
COPY service ./service
COPY worker ./worker
RUN if [ -n "${FLASH_ATTN_WHEEL}" ]; then extras="worker,gpu"; else extras="worker"; fi \
    && pip install --no-compile --constraint /opt/constraints.txt ".[${extras}]" \
    && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

ENV TEXTGENSHAP_MODEL_CACHE_DIR=/models \
    HF_HOME=/models/huggingface
VOLUME ["/models"]

USER textgenshap
EXPOSE 9400
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9400/metrics', timeout=3)"]
CMD ["textgenshap", "worker", "--redis", "redis://redis:6379/0", "--model", "gemma-3-270m", "--metrics-port", "9400"]
