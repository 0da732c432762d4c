# syntax=docker/dockerfile:1
# The kinfer operator (`kinfer operator`), deployed by charts/kinfer-operator. Build from the repository root:
#   docker build -f images/operator.Dockerfile -t kinfer/operator:0.1.0 .
# The operator never loads a model, so TensorFlow, NumPy and pyarrow stay out: the kinfer package is installed
# without its dependencies, plus exactly the libraries the operator imports (tests/helm/test_images.py checks
# that kinfer_operator imports with only these).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The libraries first, in a layer of their own (a change to kinfer's sources does not install them again).
COPY pyproject.toml constraints.txt ./
RUN python -m venv /opt/kinfer \
 && /opt/kinfer/bin/pip install pip==25.3 \
 && /opt/kinfer/bin/pip install -c constraints.txt \
      kopf==1.45.2 kubernetes==37.0.2 confluent-kafka==2.16.1 pydantic==2.14.3 pyyaml==6.0.3 \
      prometheus-client==0.26.0 aiohttp==3.14.5 cryptography==50.0.2 orjson==3.13.0
# pyproject.toml names README.md as the package's long description; an image needs none, and an edit of the
# README must not rebuild the image.
RUN : > README.md
COPY runtime ./runtime
COPY operator ./operator
RUN /opt/kinfer/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kinfer-operator" \
      org.opencontainers.image.description="kinfer operator: InferencePipeline controller and external metrics API" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 kinfer \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kinfer
COPY --from=build /opt/kinfer /opt/kinfer
ENV PATH=/opt/kinfer/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /tmp
# /metrics and /healthz; the external metrics API (TLS).
EXPOSE 8080 6443
ENTRYPOINT ["kinfer"]
CMD ["operator", "--all-namespaces"]
