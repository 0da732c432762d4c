"""kinfer's images as built by ``make images`` (images/build.sh), run the way a pod runs them.

Each command runs in the built image with runc (``images/build.sh run``): the image's own user, environment and
entrypoint, a read-only root filesystem, a tmpfs /tmp, no capabilities, no network but loopback. What is checked
is the image, not its Dockerfile's text (tests/helm/test_images.py lints the Dockerfiles). Fails with "make
images" when the images of this tree are not built.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.testbed import REPO_ROOT
from tests.testbed.node import NodeImages

pytestmark = pytest.mark.realnode

BUILD = REPO_ROOT / "images" / "build.sh"


@pytest.fixture(scope="module")
def images() -> NodeImages:
    return NodeImages.built()


def run_image(ref: str, *args: str, entrypoint: bool = True, timeout: float = 300) -> str:
    """stdout of one command in the image; fails with its output unless it exits 0."""
    command = ["bash", str(BUILD), "run", ref, *([] if entrypoint else ["--no-entrypoint"]), *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def image_config(ref: str) -> dict[str, Any]:
    inspected = subprocess.run(["bash", str(BUILD), "inspect", ref], capture_output=True, text=True, check=True)
    return dict(json.loads(inspected.stdout))


def python_in(ref: str, code: str) -> dict[str, Any]:
    """Run ``code`` with the image's python; it prints one JSON object as its last line."""
    return dict(json.loads(run_image(ref, "python", "-c", code, entrypoint=False).splitlines()[-1]))


CONFINEMENT = """
import json, os
result = {"uid": os.getuid(), "gid": os.getgid(), "home": os.environ.get("HOME"), "cwd": os.getcwd()}
try:
    open("/written-by-a-test", "w")
except OSError as error:
    result["root_write"] = error.strerror
with open("/tmp/scratch", "w") as scratch:
    result["tmp_write"] = scratch.write("ok")
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
result["cap_eff"] = status["CapEff"].strip()
print(json.dumps(result))
"""


@pytest.mark.parametrize("name", ["runtime", "operator"])
def test_the_entrypoint_is_kinfer(images: NodeImages, name: str) -> None:
    assert "usage: kinfer" in run_image(images.refs[name], "--help")
    from kinfer_runtime import __version__

    assert __version__ in run_image(images.refs[name], "--version")


@pytest.mark.parametrize("name", ["runtime", "operator"])
def test_runs_as_10001_with_a_read_only_root_and_no_capabilities(images: NodeImages, name: str) -> None:
    config = image_config(images.refs[name])["OCIv1"]["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["kinfer"]
    seen = python_in(images.refs[name], CONFINEMENT)
    assert (seen["uid"], seen["gid"]) == (10001, 10001)
    assert seen["root_write"] == "Read-only file system"
    assert seen["tmp_write"] == 2, "an emptyDir-like /tmp is all a pod needs to write"
    assert int(seen["cap_eff"], 16) == 0


def test_the_runtime_imports_tensorflow_and_loads_the_example_model(images: NodeImages) -> None:
    seen = python_in(
        images.refs["runtime"],
        "import json, tensorflow as tf\n"
        "model = tf.saved_model.load('/opt/kinfer/models/fraud/2')\n"
        "print(json.dumps({'tf': tf.__version__, 'signatures': list(model.signatures)}))",
    )
    assert seen["tf"].startswith("2.21"), seen
    assert "serving_default" in seen["signatures"]


def test_the_operator_has_no_tensorflow(images: NodeImages) -> None:
    seen = python_in(
        images.refs["operator"],
        "import importlib.util, json, kinfer_operator.main\n"
        "print(json.dumps({name: importlib.util.find_spec(name) is not None for name in ('tensorflow', 'numpy')}))",
    )
    assert seen == {"tensorflow": False, "numpy": False}


def test_the_pause_image_is_one_static_binary(images: NodeImages) -> None:
    config = image_config(images.refs["pause"])["OCIv1"]["config"]
    assert config["Entrypoint"] == ["/pause"]
    assert config["User"] == "65535:65535"


def test_image_sizes(images: NodeImages) -> None:
    archives = {name: images.archives[name].stat().st_size / 1e6 for name in images.refs}
    for name, ref in sorted(images.refs.items()):
        size = subprocess.run(["bash", str(BUILD), "size", ref], capture_output=True, text=True, check=True).stdout
        print(f"image {name} ({ref}): {size.strip()} unpacked, archive {archives[name]:.1f} MB")
    assert archives["pause"] < 2 and archives["operator"] < archives["runtime"] / 2
