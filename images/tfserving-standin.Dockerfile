# syntax=docker/dockerfile:1
# TEST STAND-IN for the tensorflow/serving image: it is NOT TensorFlow Serving, and it is never published. It runs
# the Python server of tests/tfserving/: the official PredictionService and ModelService protos, the flags of
# tensorflow_model_server, the config files parsed with TF Serving's own protos; but no batching scheduler, no C++
# runtime, no warm-up (tests/tfserving/__init__.py says what that means for tests and figures). It lets the test
# bed run real pods of `serving.mode: tfserving` where the real image cannot be pulled: set it as
# spec.serving.tfserving.image.
#
# Built on the kinfer runtime image (TensorFlow, grpcio, tensorflow-serving-api). The repository's .dockerignore
# keeps tests/ out of the build context, so the stand-in's sources come in as the named build context `standin`:
#   buildah bud --build-context standin=tests/tfserving --build-arg RUNTIME_IMAGE=localhost/kinfer/runtime:dev \
#     -f images/tfserving-standin.Dockerfile -t localhost/kinfer/tfserving-standin:dev .
#   (docker buildx build takes the same --build-context)
#
# As tensorflow/serving's tf_serving_entrypoint.sh does, the entrypoint passes --port=8500 --rest_api_port=8501
# --model_name=$MODEL_NAME --model_base_path=$MODEL_BASE_PATH/$MODEL_NAME, then the container's args: the
# operator's args (--port, --rest_api_port, --model_config_file, ...) come last and win. Runs as 10001 and writes
# nothing outside /tmp, so it works with a read-only root filesystem and an emptyDir on /tmp.
ARG RUNTIME_IMAGE=localhost/kinfer/runtime:dev
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="kinfer-tfserving-standin" \
      org.opencontainers.image.description="Test stand-in for tensorflow/serving (not TF Serving), never published" \
      org.opencontainers.image.licenses="Apache-2.0"
# `standin` is the named build context above, not a stage.
# hadolint ignore=DL3022
COPY --from=standin . /opt/tfserving-standin/tests/tfserving/
USER 0:0
# The package `tests` holds only the stand-in here; byte code of the work tree is not shipped (none is written).
# The entrypoint script expands $MODEL_NAME when it runs, hence the single quotes.
# hadolint ignore=SC2016
RUN printf '"""Test stand-ins of kinfer: only tests.tfserving in this image."""\n' \
      > /opt/tfserving-standin/tests/__init__.py \
 && find /opt/tfserving-standin -name __pycache__ -prune -exec rm -rf {} + \
 && PYTHONPATH=/opt/tfserving-standin python -c "import tests.tfserving.cli" \
 && printf '%s\n' '#!/bin/sh' \
      'exec python -m tests.tfserving --port=8500 --rest_api_port=8501 --model_name="$MODEL_NAME" \' \
      '  --model_base_path="$MODEL_BASE_PATH/$MODEL_NAME" "$@"' > /usr/local/bin/tf_serving_entrypoint.sh \
 && chmod 0755 /usr/local/bin/tf_serving_entrypoint.sh
ENV PYTHONPATH=/opt/tfserving-standin \
    MODEL_NAME=model \
    MODEL_BASE_PATH=/models
USER 10001:10001
WORKDIR /tmp
# gRPC (PredictionService, ModelService) and REST (status, metadata, :predict, Prometheus).
EXPOSE 8500 8501
ENTRYPOINT ["/usr/local/bin/tf_serving_entrypoint.sh"]
