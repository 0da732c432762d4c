# syntax=docker/dockerfile:1
# The kinfer runtime (`kinfer run`): the consumer pods of every InferencePipeline. Build from the repository root:
#   docker build -f images/runtime.Dockerfile -t kinfer/runtime:0.1.0 .
#
# GPU variant: in `tfserving` mode the GPU belongs to the TF Serving pods (image tensorflow/serving:<version>-gpu,
# spec.serving.tfserving.resources with nvidia.com/gpu) and this CPU image stays as it is. For `embedded` mode on
# a GPU node, build with --build-arg TF_PACKAGE="tensorflow[and-cuda]==2.21.0" (the CUDA libraries come as pip
# wheels, so the slim base still works; the node needs the NVIDIA driver and device plugin) and give the consumer
# spec.consumer.resources.limits nvidia.com/gpu: 1.
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TF_PACKAGE=tensorflow-cpu==2.21.0
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# One virtualenv copied whole into the final stage; every version pinned by pyproject.toml and constraints.txt.
# The dependencies go in first, in a layer of their own, so that a change to kinfer's sources does not install
# TensorFlow again. tensorflow-serving-api (the TF Serving gRPC stubs) declares the full `tensorflow` wheel, hence
# --no-deps; TF_PACKAGE replaces pyproject.toml's tensorflow-cpu (the GPU variant below).
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(d for d in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"] if not d.startswith("tensorflow-cpu")))' > requirements.txt \
 && python -m venv /opt/kinfer \
 && /opt/kinfer/bin/pip install pip==25.3 \
 && /opt/kinfer/bin/pip install -c constraints.txt "${TF_PACKAGE}" -r requirements.txt \
 && /opt/kinfer/bin/pip install --no-deps tensorflow-serving-api==2.21.0
# pyproject.toml names README.md as the package's long description; an image needs none, and an edit of the
# README must not rebuild the image.
RUN : > README.md
COPY runtime ./runtime
COPY operator ./operator
RUN /opt/kinfer/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kinfer-runtime" \
      org.opencontainers.image.description="kinfer runtime: Kafka in, TensorFlow model, Kafka out" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed numeric non-root user, matching the pods' runAsUser (the operator sets runAsNonRoot).
RUN groupadd --gid 10001 kinfer \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kinfer
COPY --from=build /opt/kinfer /opt/kinfer
# Example models, for pipelines whose model URI is a path in the image (file:///opt/kinfer/models/...).
COPY models /opt/kinfer/models
ENV PATH=/opt/kinfer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    KINFER_MODEL_ROOT=/mnt/models
USER 10001:10001
WORKDIR /tmp
# /metrics, /healthz, /readyz (spec.monitoring.metricsPort).
EXPOSE 9400
ENTRYPOINT ["kinfer"]
CMD ["run", "/etc/kinfer/pipeline.yaml"]
