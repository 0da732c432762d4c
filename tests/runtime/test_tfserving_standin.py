"""The TF Serving stand-in (tests/tfserving/, not the real server) takes what the operator gives TF Serving.

The operator's config files parse with TF Serving's own protos and broken ones stop the start with the parse
error; version policies pick the versions TF Serving would serve; the REST and gRPC status, metadata, metrics and
``max_batch_size`` behave as TF Serving's; and ``python -m tests.tfserving`` started with the operator's own
``tfserving_args`` serves the model to the tfserving predictor.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tensorflow_serving.config import model_server_config_pb2

from kinfer_operator.builders import naming
from kinfer_operator.builders.tfserving import build_tfserving_configmap, tfserving_args
from kinfer_runtime.predictors.tfserving import TfServingPredictor
from kinfer_runtime.spec import TfServingSpec
from tests.operator.pipelines import FRAUD, SENSOR, owner, pipeline
from tests.testbed import free_port
from tests.tfserving import TfServingTestServer, cli
from tests.tfserving import config as cfg
from tests.tfserving.protos import batching_parameters_class, monitoring_config_class

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


def _tfserving_pipeline(model_dir: Path, **serving: Any) -> Any:
    return pipeline(FRAUD, model={"uri": str(model_dir)}, serving={"mode": "tfserving", "tfserving": serving})


def _write_configs(p: Any, directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for key, text in build_tfserving_configmap(p, owner(p))["data"].items():
        (directory / key).write_text(text)


# -- the operator's files, parsed with TF Serving's protos ---------------------------------------------------


def test_the_operators_config_files_parse_with_tf_servings_protos(tmp_path: Path) -> None:
    for p in (
        pipeline(SENSOR),  # Pinned version 1, s3 model, batching on
        _tfserving_pipeline(Path("/models/fraud")),  # Latest
        pipeline(SENSOR, serving={"tfserving": {"batching": {"enabled": False}}}),
    ):
        directory = tmp_path / p.metadata.name / str(id(p))
        _write_configs(p, directory)
        models = cfg.model_entries(cfg.read_model_server_config(directory / "models.config"))
        assert [m.name for m in models] == [p.spec.model.name]
        policy = models[0].policy.WhichOneof("policy_choice")
        assert policy == ("specific" if p.spec.model.version is not None else "latest")
        batching = cfg.read_batching_parameters(directory / "batching.config")
        assert batching.max_batch_size.value == p.spec.serving.tfserving.batching.max_batch_size
        assert batching.batch_timeout_micros.value == p.spec.serving.tfserving.batching.batch_timeout_micros
        assert cfg.prometheus_path(cfg.read_monitoring_config(directory / "monitoring.config")) == (
            "/monitoring/prometheus/metrics"
        )
        # Every flag the operator passes is one tensorflow_model_server (and so the stand-in) takes.
        args = cli.parser().parse_args(tfserving_args(p))
        assert args.enable_batching is p.spec.serving.tfserving.batching.enabled
        assert args.model_config_file == f"{naming.TFSERVING_CONFIG_DIR}/models.config"


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("models.config", 'model_config_list { config { name: "m" base_pth: "/x" } }', "base_pth"),
        ("models.config", 'model_config_list { config { name: "m"', "Expected"),
        ("batching.config", "max_batch_size: 64\n", 'Expected "{"'),
        ("batching.config", "max_batch_size { value: -x }\n", "max_batch_size"),
        ("monitoring.config", "prometheus_config { enable: maybe }\n", "enable"),
    ],
)
def test_a_file_tf_serving_would_refuse_stops_the_start(tmp_path, capsys, file, text, message) -> None:
    p = _tfserving_pipeline(tmp_path / "models" / "fraud")
    _write_configs(p, tmp_path)
    (tmp_path / file).write_text(text)
    args = [a.replace(naming.TFSERVING_CONFIG_DIR, str(tmp_path)) for a in tfserving_args(p)]
    assert cli.main(args) == cli.EXIT_FAILED_START
    error = capsys.readouterr().err
    assert f"Invalid protobuf file: '{tmp_path / file}'" in error and message in error, error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port=8500"], "model_base_path and server_options.model_config_file are empty"),
        (["--model_base_path=/m", "--batching_parameters_file=/b"], "without setting server_options.enable_batching"),
        (["--port=0", "--model_base_path=/m"], "grpc_port or server_options.grpc_socket_path must be set"),
    ],
)
def test_server_cc_checks_come_first(capsys, args, message) -> None:
    assert cli.main(args) == cli.EXIT_FAILED_START
    assert message in capsys.readouterr().err


def test_an_invalid_model_list_is_refused(tmp_path: Path) -> None:
    twice = 'config { name: "m" base_path: "/a" model_platform: "tensorflow" }'
    for text, message in [
        (f"model_config_list {{ {twice} {twice} }}", "Illegal to list model m multiple times"),
        ('model_config_list { config { name: "m" base_path: "/a" } }', "neither ModelServerConfig::model_type"),
        ('model_config_list { config { name: "m" base_path: "rel" model_platform: "tensorflow" } }', "absolute"),
    ]:
        config = cfg.parse_text_proto(text, model_server_config_pb2.ModelServerConfig, "models.config")
        with pytest.raises(cfg.ConfigError, match=message):
            cfg.model_entries(config)


def test_version_policies_pick_what_tf_serving_serves() -> None:
    config_class = model_server_config_pb2.ModelConfig

    def policy(text: str) -> Any:
        return cfg.parse_text_proto(f"model_version_policy {{ {text} }}", config_class, "-").model_version_policy

    on_disk = [3, 1, 7, 5]
    assert cfg.aspired_versions(config_class().model_version_policy, on_disk) == [7]  # default: latest 1
    assert cfg.aspired_versions(policy("latest { num_versions: 2 }"), on_disk) == [5, 7]
    assert cfg.aspired_versions(policy("latest { }"), on_disk) == [7]
    assert cfg.aspired_versions(policy("all { }"), on_disk) == [1, 3, 5, 7]
    assert cfg.aspired_versions(policy("specific { versions: 1 versions: 4 versions: 5 }"), on_disk) == [1, 5]


def test_batch_refusal_follows_the_batching_queue() -> None:
    parameters = cfg.parse_text_proto("max_batch_size { value: 8 }", batching_parameters_class(), "-")
    limit = cfg.input_batch_size_limit(parameters)
    assert limit == 8 and cfg.input_batch_size_limit(None) is None
    assert cfg.input_batch_size_limit(batching_parameters_class()()) == 1000  # the scheduler's default
    assert cfg.batch_refusal([8, 8], limit) is None
    assert cfg.batch_refusal([9, 9], limit) == "Task size 9 is larger than maximum input batch size 8"
    assert cfg.batch_refusal([4, 5], limit) == "Batching Run() input tensors must have equal 0th-dimension size"
    assert cfg.batch_refusal([10_000], None) is None  # no --enable_batching, no limit
    monitoring = cfg.parse_text_proto("prometheus_config { enable: true }", monitoring_config_class(), "-")
    assert cfg.prometheus_path(monitoring) == cfg.DEFAULT_PROMETHEUS_PATH
    assert cfg.prometheus_path(monitoring_config_class()()) is None


# -- a running stand-in: two models, two versions, batching and monitoring ------------------------------------


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("two") / "fraud"
    for version in ("1", "2"):
        shutil.copytree(MODELS / "fraud" / version, base / version)
    return base


@pytest.fixture(scope="module")
def standin(two_versions: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    config_file = tmp_path_factory.mktemp("config") / "models.config"
    config_file.write_text(
        "model_config_list {\n"
        f'  config {{ name: "fraud" base_path: "{two_versions}" model_platform: "tensorflow"\n'
        "           model_version_policy { specific { versions: 1 versions: 2 } }\n"
        '           version_labels { key: "stable" value: 1 } }\n'
        f'  config {{ name: "fraud-latest" base_path: "{two_versions}" model_platform: "tensorflow" }}\n'
        "}\n"
    )
    batching = cfg.parse_text_proto("max_batch_size { value: 8 }", batching_parameters_class(), "-")
    metrics = 'prometheus_config { enable: true, path: "/metrics" }'
    monitoring = cfg.parse_text_proto(metrics, monitoring_config_class(), "-")
    server = TfServingTestServer(model_config_file=config_file, batching=batching, monitoring=monitoring).start()
    yield server
    server.stop()


def _get(server: TfServingTestServer, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}{path}", timeout=30) as reply:
            body = reply.read()
            return reply.status, json.loads(body) if reply.headers["Content-Type"] == "application/json" else body
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _post(server: TfServingTestServer, path: str, document: Any) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=json.dumps(document).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_model_status_is_tf_servings_json(standin: TfServingTestServer) -> None:
    ok = {"error_code": "OK", "error_message": ""}
    assert _get(standin, "/v1/models/fraud") == (
        200,
        {"model_version_status": [{"version": v, "state": "AVAILABLE", "status": ok} for v in ("2", "1")]},
    )
    assert _get(standin, "/v1/models/fraud/versions/1")[1]["model_version_status"][0]["state"] == "AVAILABLE"
    assert _get(standin, "/v1/models/fraud/labels/stable")[1]["model_version_status"][0]["version"] == "1"
    assert _get(standin, "/v1/models/fraud-latest") == (
        200,
        {"model_version_status": [{"version": "2", "state": "AVAILABLE", "status": ok}]},
    )
    assert _get(standin, "/v1/models/fraud/versions/3") == (404, {"error": "Could not find version 3 of model fraud"})
    assert _get(standin, "/v1/models/nope") == (404, {"error": "Could not find any versions of model nope"})
    assert _get(standin, "/v1/models/fraud/bogus")[0] == 400  # Malformed request


def test_grpc_status_metadata_and_versions(standin: TfServingTestServer) -> None:
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    from kinfer_runtime.predictors.tensor_codec import array_to_tensor_proto

    with grpc.insecure_channel(standin.endpoint) as channel:
        status_request = get_model_status_pb2.GetModelStatusRequest()
        status_request.model_spec.name = "fraud-latest"
        status = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status_request, timeout=30)
        assert [(s.version, s.state) for s in status.model_version_status] == [(2, 30)]  # AVAILABLE
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        metadata_request.model_spec.name = "fraud"
        metadata = prediction.GetModelMetadata(metadata_request, timeout=30)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        metadata.metadata["signature_def"].Unpack(signatures)
        assert set(signatures.signature_def["serving_default"].inputs) == {"dense", "merchant_category"}

        def request_for(name: str, rows: int) -> Any:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            request.inputs["dense"].CopyFrom(array_to_tensor_proto(np.zeros((rows, 18), np.float32)))
            request.inputs["merchant_category"].CopyFrom(array_to_tensor_proto(np.zeros((rows, 1), np.int64)))
            return request

        def predict(name: str, version: int | None, rows: int) -> Any:
            request = request_for(name, rows)
            if version is not None:
                request.model_spec.version.value = version
            return prediction.Predict(request, timeout=30)

        assert predict("fraud", 1, 2).model_spec.version.value == 1  # specific { 1, 2 }: both served
        assert predict("fraud", None, 2).model_spec.version.value == 2
        labelled = predict_pb2.PredictRequest()
        labelled.CopyFrom(request_for("fraud", 2))
        labelled.model_spec.version_label = "stable"
        assert prediction.Predict(labelled, timeout=30).model_spec.version.value == 1
        with pytest.raises(grpc.RpcError) as refused:
            predict("fraud-latest", 1, 2)  # latest { 1 }: version 1 is not served
        assert refused.value.code() is grpc.StatusCode.NOT_FOUND
        assert "Specific(fraud-latest, 1)" in refused.value.details()
        assert predict("fraud", None, 8).outputs["fraud_probability"].tensor_shape.dim[0].size == 8
        with pytest.raises(grpc.RpcError) as too_big:
            predict("fraud", None, 9)  # max_batch_size 8
        assert too_big.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert too_big.value.details() == "Task size 9 is larger than maximum input batch size 8"


def test_rest_predict_both_formats_and_the_batch_limit(standin: TfServingTestServer) -> None:
    columns = {"dense": np.zeros((3, 18)).tolist(), "merchant_category": [[0], [1], [2]]}
    status, document = _post(standin, "/v1/models/fraud/versions/1:predict", {"inputs": columns})
    assert status == 200 and len(document["outputs"]) == 3  # one output: bare, as TF Serving answers
    rows = [{"dense": [0.0] * 18, "merchant_category": [1]}] * 2
    status, document = _post(standin, "/v1/models/fraud:predict", {"instances": rows})
    assert status == 200 and len(document["predictions"]) == 2
    too_big = {"dense": np.zeros((9, 18)).tolist(), "merchant_category": [[0]] * 9}
    assert _post(standin, "/v1/models/fraud:predict", {"inputs": too_big}) == (
        400,
        {"error": "Task size 9 is larger than maximum input batch size 8"},
    )


def test_prometheus_metrics_on_the_configured_path(standin: TfServingTestServer) -> None:
    _post(standin, "/v1/models/fraud:predict", {"instances": [{"dense": [0.0] * 18, "merchant_category": [1]}]})
    status, text = _get(standin, "/metrics")
    assert status == 200
    assert ':tensorflow:serving:request_count{model_name="fraud",status="OK"}' in text.decode()


def test_the_model_config_is_read_again_and_a_broken_one_is_ignored(standin: TfServingTestServer) -> None:
    assert standin.model_config_file is not None
    original = standin.model_config_file.read_text()
    try:
        standin.model_config_file.write_text(original.replace("versions: 1 versions: 2", "versions: 1"))
        assert standin.reload_config()
        assert standin.manager.available_versions("fraud") == [1]
        standin.model_config_file.write_text("model_config_list { config {")
        assert not standin.reload_config()  # logged, the previous config stays
        assert standin.manager.available_versions("fraud") == [1]
    finally:
        standin.model_config_file.write_text(original)
        assert standin.reload_config()
    assert standin.manager.available_versions("fraud") == [1, 2]


# -- python -m tests.tfserving with the operator's own arguments ----------------------------------------------


def test_started_with_the_operators_arguments_it_serves_the_predictor(tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "fraud"
    shutil.copytree(MODELS / "fraud" / "1", model_dir / "1")
    grpc_port, rest_port = free_port(), free_port()
    p = _tfserving_pipeline(model_dir, grpcPort=grpc_port, restPort=rest_port, batching={"maxBatchSize": 256})
    config_dir = tmp_path / "etc-tfserving"
    _write_configs(p, config_dir)
    args = [a.replace(naming.TFSERVING_CONFIG_DIR, str(config_dir)) for a in tfserving_args(p)]
    log = (tmp_path / "standin.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.tfserving", *args],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        status_url = f"http://127.0.0.1:{rest_port}/v1/models/fraud"  # the operator's readiness probe
        deadline = time.monotonic() + 180  # a bound on waiting for the start, not a measurement
        while True:
            assert process.poll() is None, (tmp_path / "standin.log").read_text()
            try:
                with urllib.request.urlopen(status_url, timeout=5) as reply:
                    state = json.loads(reply.read())["model_version_status"][0]["state"]
                    if state == "AVAILABLE":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "standin.log").read_text()
            time.sleep(0.25)
        settings = TfServingSpec(timeout_ms=10_000, max_retries=1, rest_port=rest_port, rest_fallback=False)
        predictor = TfServingPredictor("fraud", f"127.0.0.1:{grpc_port}", settings, model_dir=model_dir)
        predictor.load()
        assert predictor.ready()
        prediction = predictor.predict({"dense": np.zeros((64, 18), np.float32),
                                        "merchant_category": np.zeros((64, 1), np.int64)})  # fmt: skip
        assert prediction.model_version == 1 and prediction.outputs["fraud_probability"].shape == (64,)
        predictor.close()
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=60)
        finally:
            if process.poll() is None:  # never leave it running, whatever failed
                process.kill()
                process.wait()
            log.close()
    assert code == 0, (tmp_path / "standin.log").read_text()


def test_the_standin_image_is_marked_as_a_test_stand_in_and_runs_as_10001() -> None:
    dockerfile = REPO / "images" / "tfserving-standin.Dockerfile"
    text = dockerfile.read_text()
    header = text.split("\nARG ", 1)[0]
    assert "TEST STAND-IN for the tensorflow/serving image" in header and "never published" in header
    assert "ARG RUNTIME_IMAGE=" in text and "FROM ${RUNTIME_IMAGE}" in text
    assert text.rstrip().endswith('ENTRYPOINT ["/usr/local/bin/tf_serving_entrypoint.sh"]')
    final_user = [line for line in text.splitlines() if line.startswith("USER ")][-1]
    assert final_user == "USER 10001:10001" and "EXPOSE 8500 8501" in text
    hadolint = Path(sys.executable).parent / "hadolint"
    if hadolint.exists():
        result = subprocess.run([str(hadolint), "--no-color", str(dockerfile)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
