# sd35ui for NVIDIA GPUs. Build: docker build -t sd35ui .   Run: see README.md, "Docker".
#
# torch 2.13.0's Linux wheel is built for CUDA 13.0 and brings its own CUDA libraries from PyPI (cuda-toolkit
# 13.0.3; cudart 13.0.96 is CUDA 13.0.2), so the slim "base" flavour of the same CUDA release is enough: it sets the
# NVIDIA container variables and refuses to start on a host driver too old for CUDA 13.0 (needs 580 or newer).
# The "runtime" flavour would add a second copy of cuBLAS and friends (about 2 GB) that torch never loads.
FROM nvidia/cuda:13.0.2-base-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Ubuntu's python3 (3.12) is updated in place by Ubuntu, so its version is not pinned; the Python packages are.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# A virtual environment: Ubuntu 24.04 refuses pip installs into the system Python (PEP 668).
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app

# Requirements first: this (multi-GB) layer is rebuilt only when requirements.txt changes, not on every code edit.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# A non-root user; it owns only the model cache and the outputs, never the code.
# (uid 1000 is taken by the base image's "ubuntu" user.)
RUN groupadd --gid 1001 sd35ui \
    && useradd --create-home --uid 1001 --gid 1001 sd35ui \
    && mkdir -p /app/cache /app/outputs \
    && chown 1001:1001 /app/cache /app/outputs

COPY . .

# Downloaded weights live on a volume, so a new container (or image) does not download 20 GB again.
# HF_TOKEN (for the gated SD3.5 Medium) is passed at run time with -e HF_TOKEN, never baked into the image.
ENV HF_HOME=/app/cache \
    SD35UI_CACHE=/app/cache/sd35ui \
    SD35UI_OUTPUTS=/app/outputs \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False
VOLUME ["/app/cache", "/app/outputs"]

USER 1001:1001
EXPOSE 7860

# The first start downloads the model (about 20 GB) and loads it before serving: allow for that before failing.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20m --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('GRADIO_SERVER_PORT', '7860') + '/', timeout=8)"]

# Bind every interface so that -p 7860:7860 reaches the app. Flags after the image name are appended, e.g.
# `docker run ... sd35ui --quant nf4 --offload model`.
ENTRYPOINT ["python", "demo.py", "--host", "0.0.0.0"]
CMD []
