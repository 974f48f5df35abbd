"""The GPU benchmark's --tiny mode: the same code path on CPU, end to end."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_cifar10.py"


@pytest.mark.slow
def test_gpu_cifar10_tiny_runs_on_cpu(tmp_path, monkeypatch):
    monkeypatch.delenv("LIGHTNING_UNLEARN_DATA", raising=False)  # digits: runs anywhere
    spec = importlib.util.spec_from_file_location("gpu_cifar10", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    summary = mod.main(["--tiny", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--accelerator", "cpu"])
    written = json.loads((tmp_path / "out" / "gpu_cifar10_tiny.json").read_text())
    assert written["device"].startswith("CPU") and written["tiny"] is True
    assert set(written["methods"]) == {"original", "retrain", "amun", "ft", "salun"}
    assert written["config"]["device_data"] is True and written["config"]["rmia_references"] == 2
    for key in ("ratio_every_100", "ratio_every_10", "original_epochs_per_minute"):
        value = written["fastclip"].get(key, written.get(key))
        assert value is not None and math.isfinite(value) and value > 0
    assert summary["amun_over_retrain"] > 0
    assert "paper RMIA" in (tmp_path / "out" / "gpu_cifar10_tiny.md").read_text()
