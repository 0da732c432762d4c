"""Contender (c) from the benchmark's side: build ``.bench/quix-venv`` once, run :mod:`tests.bench.quix_app` in it.

quixstreams 3.28.1 needs confluent-kafka < 2.13 while kinfer pins 2.16.1, so it gets its own venv. TensorFlow,
numpy and kinfer's preprocessing come from the main ``.venv`` through a ``.pth`` file, which Python appends after
the venv's own site-packages: Quix keeps its own confluent-kafka and pydantic, the model code is shared.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from tests.bench.kafka_io import topic_size

QUIXSTREAMS = "quixstreams==3.28.1"
ROOT = Path(__file__).resolve().parents[2]


def ensure_quix_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    marker = venv / ".kinfer-bench-ready"
    if not marker.exists():
        print(f"creating {venv} with {QUIXSTREAMS} (first run only)", flush=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base_python, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", QUIXSTREAMS], check=True)
        marker.write_text(QUIXSTREAMS + "\n")
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    (Path(site) / "kinfer-main-venv.pth").write_text(f"{ROOT / 'runtime'}\n{sysconfig.get_paths()['purelib']}\n")
    return python


def run_quix(python: Path, bootstrap: str, source: str, target: str, partitions: int, group: str,
             version_dir: Path, seconds: float, log_path: Path) -> int:  # fmt: skip
    """Run the Quix app until it has produced for ``seconds`` (after its first output); returns exit status."""
    app = Path(__file__).with_name("quix_app.py")
    with log_path.open("w") as log:
        process = subprocess.Popen([str(python), str(app), bootstrap, source, target, group, str(version_dir)],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while topic_size(bootstrap, target, partitions) == 0:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the quixstreams app did not start; see {log_path}")
                time.sleep(0.5)
            time.sleep(seconds)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait(10)
