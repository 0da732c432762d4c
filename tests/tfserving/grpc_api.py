"""The stand-in's gRPC services, from the official stubs of ``tensorflow-serving-api``.

``PredictionService``: Predict and GetModelMetadata (Classify, Regress and MultiInference answer UNIMPLEMENTED).
``ModelService``: GetModelStatus (HandleReloadConfigRequest answers UNIMPLEMENTED; the config file is polled).
Status codes and messages are TF Serving's for the same situations (see models.py).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tests.tfserving.models import ServingError

if TYPE_CHECKING:
    from tests.tfserving.server import TfServingTestServer


def _model_spec(spec: Any) -> tuple[str, int | None, str | None]:
    version = spec.version.value if spec.HasField("version") else None
    label = spec.version_label if spec.HasField("version_label") else None
    return spec.name, version, label


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, owner: TfServingTestServer) -> None:
        self.owner = owner

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        owner, manager = self.owner, self.owner.manager
        owner.note_predict_call()
        if owner.delay_seconds:
            time.sleep(owner.delay_seconds)
        if owner.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "test server made unavailable")
        name, version, label = _model_spec(request.model_spec)
        signature_name = request.model_spec.signature_name or "serving_default"
        try:
            servable = manager.servable(name, version, label)
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            outputs = manager.predict(servable, signature_name, inputs)
        except ServingError as error:
            manager.count_request(name, error.code)
            context.abort(error.code, error.message)
        manager.count_request(name, grpc.StatusCode.OK)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature_name
        for key, array in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(array))
        return response

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return model_metadata(self.owner, request)
        except ServingError as error:
            context.abort(error.code, error.message)


def model_metadata(owner: TfServingTestServer, request: Any) -> Any:
    """GetModelMetadataResponse with the ``signature_def`` field (the only one TF Serving supports)."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    if not request.metadata_field:
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must specify at least one metadata_field"
        )
    for field in request.metadata_field:
        if field != "signature_def":
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
    name, version, label = _model_spec(request.model_spec)
    servable = owner.manager.servable(name, version, label)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs().items():
        signatures.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = name
    response.model_spec.version.value = servable.version
    response.metadata["signature_def"].Pack(signatures)
    return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, owner: TfServingTestServer) -> None:
        self.owner = owner

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not request.HasField("model_spec"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        name, version, label = _model_spec(request.model_spec)
        try:
            return self.owner.manager.status(name, version, label)
        except ServingError as error:
            context.abort(error.code, error.message)


def add_services(server: grpc.Server, owner: TfServingTestServer) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(owner), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(owner), server)
