"""``kinfer run``: manifest loading and how flags and environment override the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kinfer_runtime.pipeline.entrypoint import load_pipeline, main, parse_args, resolve_options
from kinfer_runtime.spec import SpecError

REPO = Path(__file__).resolve().parents[2]


def test_flags_win_over_environment_and_empty_values_mean_unset() -> None:
    env = {"KINFER_BOOTSTRAP_SERVERS": "env:9092", "KINFER_POD_NAME": "pod-7", "KINFER_TFSERVING_ENDPOINT": ""}
    options = resolve_options(parse_args(["p.yaml", "--bootstrap-servers", "cli:9092", "--model-path", "/m"]), env)
    assert options.bootstrap_servers == "cli:9092" and options.pod_name == "pod-7"
    assert options.model_path == Path("/m") and options.tfserving_endpoint is None
    assert resolve_options(parse_args(["p.yaml"]), {}).bootstrap_servers is None


def test_the_demo_pipeline_file_is_a_valid_manifest() -> None:
    pipeline = load_pipeline(REPO / "runtime" / "pipelines" / "fraud-local.yaml")
    assert pipeline.metadata.name == "fraud" and pipeline.spec.consumer.max_batch_size == 256


def test_an_invalid_manifest_exits_2_with_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = yaml.safe_load((REPO / "runtime" / "pipelines" / "fraud-local.yaml").read_text())
    manifest["spec"]["consumer"]["maxBatchSize"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(manifest))
    with pytest.raises(SpecError, match="maxBatchSize"):
        load_pipeline(path)
    assert main([str(path)]) == 2
    assert "maxBatchSize" in capsys.readouterr().err
    (tmp_path / "list.yaml").write_text("- 1\n")
    assert main([str(tmp_path / "list.yaml")]) == 2
