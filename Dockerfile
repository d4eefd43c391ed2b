# scifolio: the pipeline CLI (`python -m pipelines <project> <stage>`) in a container.
#
#   docker build -t scifolio:cpu .                                  # CPU (default): the lock as CI installs it
#   docker build -t scifolio:cu128 --build-arg TORCH_VARIANT=cu128 .   # CUDA: the same lock, torch from PyTorch's cu128 index
#   docker run --rm -v scifolio-work:/work scifolio:cpu energy all  # the demo chain; state stays in the volume
#
# Everything but torch is installed from requirements.lock with --require-hashes and --no-deps, like
# `make install`: nothing is resolved at build time. The lock was resolved for CPython 3.11 on
# x86_64 Linux (Makefile LOCK_FLAGS), hence the 3.11 base; build for linux/amd64.
# The CUDA build needs no CUDA base image: PyTorch's CUDA wheels bring the CUDA runtime as
# nvidia-* wheels; the host needs only the NVIDIA driver and container toolkit (`docker run --gpus all`).
# Linted offline by tests/deploy/test_manifests.py (hadolint, failing on warnings); never built in CI.

# 3.11 because the lock is resolved for it; slim because nothing here compiles (every lock entry is a wheel)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# cpu: torch as the lock pins it (2.13.0+cpu, hash-checked) | cu126, cu128, ...: PyTorch's CUDA build
ARG TORCH_VARIANT=cpu
# where that build lives: PyTorch's index for the variant (PyPI serves neither +cpu nor CUDA-index builds)
ARG TORCH_INDEX=https://download.pytorch.org/whl/${TORCH_VARIANT}

# a failing stage of a pipe fails the build (hadolint DL4006)
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# the venv is copied whole into the runtime stage, so pip's and uv's caches never reach the image
ENV VIRTUAL_ENV=/opt/venv \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY requirements.lock /tmp/requirements.lock

# The lock split in two by its entries (an entry is a "name==version \" line plus its indented hash
# lines): torch comes from its own index, everything else from PyPI. uv is installed first from its
# own hash-pinned entry in the same lock, as `make install` installs it (same version, checked hashes).
RUN awk '/^[^ #]/ {keep = /^uv==/} keep' /tmp/requirements.lock > /tmp/uv.txt \
 && awk '/^[^ #]/ {keep = /^torch==/} keep' /tmp/requirements.lock > /tmp/torch.txt \
 && awk '/^[^ #]/ {keep = !/^torch==/} keep' /tmp/requirements.lock > /tmp/rest.txt \
 && python -m venv "${VIRTUAL_ENV}" \
 && "${VIRTUAL_ENV}/bin/pip" install --no-cache-dir --require-hashes --no-deps -r /tmp/uv.txt

# Everything but torch from PyPI; --compile-bytecode writes the .pyc files once here, not on every
# container start (torch, mlflow, GX). Then torch. CPU: the lock's own torch entry, hash-checked. CUDA:
# the same torch version from the CUDA index; its nvidia-* runtime wheels are not in the (CPU) lock, so
# they are resolved from that index, the one step of this build pinned by version only (docs/deploy.md).
RUN "${VIRTUAL_ENV}/bin/uv" pip install --python "${VIRTUAL_ENV}/bin/python" --require-hashes --no-deps \
        --compile-bytecode -r /tmp/rest.txt \
 && if [ "${TORCH_VARIANT}" = "cpu" ]; then \
        "${VIRTUAL_ENV}/bin/uv" pip install --python "${VIRTUAL_ENV}/bin/python" --require-hashes --no-deps \
            --compile-bytecode --index-url "${TORCH_INDEX}" -r /tmp/torch.txt; \
    else \
        version="$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' /tmp/torch.txt)"; \
        "${VIRTUAL_ENV}/bin/uv" pip install --python "${VIRTUAL_ENV}/bin/python" --compile-bytecode \
            --index-url "${TORCH_INDEX}" "torch==${version}"; \
    fi \
 && "${VIRTUAL_ENV}/bin/python" -c "import torch, lightning, mlflow, optuna, psycopg2, boto3"


FROM ${PYTHON_IMAGE}

# uid 10001, fixed and unprivileged: `USER 10001` below is numeric, so Kubernetes' runAsNonRoot can verify
# it, and volumes can be chowned to it. -l: no lastlog entry, a sparse file of GBs for a high uid (DL3046)
RUN useradd -l --uid 10001 --create-home --home-dir /home/scifolio --shell /usr/sbin/nologin scifolio \
 && install -d -o scifolio -g scifolio /work

COPY --from=build /opt/venv /opt/venv
# the code, read-only for the user (owned by root); /app is on PYTHONPATH instead of an install
# (`pip install .` would fetch a build backend at build time, outside the lock)
COPY components /app/components
COPY pipelines /app/pipelines
# the default recipe, in the working directory where the CLI looks for it (--params picks another)
COPY --chown=scifolio:scifolio params.yaml /work/params.yaml

# MLFLOW_TRACKING_URI is left unset: the image defaults to the embedded store under /work, like a
# checkout; compose and the manifests point it at the tracking server. No secret is baked in.
# PYTHONUNBUFFERED: log lines reach `docker logs` / `kubectl logs` as they are written.
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    HF_HUB_OFFLINE=1

# /work holds every output (data/, mlflow.db, mlruns/, monitoring/, wandb/): mount a volume on it
WORKDIR /work
USER 10001:10001
# the model server inside a container: see compose.yaml / deploy/k8s (components.serve, --host 0.0.0.0)
EXPOSE 5050

ENTRYPOINT ["python", "-m", "pipelines"]
CMD ["energy", "all"]
