"""``lightning-unlearn benchmark``: end to end in process and as a module, and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_unlearn.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--max-train", "300", "--max-test", "150", "--epochs", "1", "--unlearn-epochs", "1", "--rmia-references", "2", "--max-trials", "1", "--quiet"]
SCHEMA_KEYS = {"ua", "ra", "ta", "mia", "rmia_auc", "mia_nn_auc", "avg_gap", "avg_gap_mis", "seconds", "hparams", "per_seed"}


def test_benchmark_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["benchmark", *TINY, "--methods", "ft", "--tune-lrs", "0.01", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["methods"]) == ["original", "retrain", "ft"]
    assert res["config"]["forget"] == "random:0.1" and res["config"]["no_remain"] is False
    assert res["config"]["rmia_references"] == 2 and res["config"]["avg_gap_mia"] == "rmia_auc"
    for m in res["methods"].values():
        assert SCHEMA_KEYS <= set(m)
        for k in ("ua", "ra", "ta", "mia", "rmia_auc"):
            assert 0.0 <= m[k] <= 100.0, k
        assert m["avg_gap"] is not None and m["avg_gap"] >= 0
    assert res["methods"]["retrain"]["avg_gap"] == 0.0  # one retrained model: its own reference
    assert res["methods"]["ft"]["hparams"]["lr"] == 0.01 and res["tuning"]["ft"][0]["hparams"] == {"lr": 0.01}
    assert {"report.md", "results.json", "rmia_roc.png", "avg_gap.png"} <= {p.name for p in out.iterdir()}
    report = (out / "report.md").read_text()
    assert "![RMIA ROC curves (log FPR)](rmia_roc.png)" in report and "| ft |" in report
    printed = capsys.readouterr().out
    assert "original" in printed and "ft" in printed and "report:" in printed
    # the rerun trains nothing: every model comes from the cache
    rc = main(["benchmark", *TINY, "--methods", "ft", "--tune-lrs", "0.01", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)])
    assert rc == 0
    again = json.loads((out / "results.json").read_text())
    assert again["run"]["models_trained"] == 0 and again["run"]["models_loaded"] == res["run"]["models_trained"]
    assert again["methods"]["original"]["ua"] == res["methods"]["original"]["ua"]


BAD_INPUTS = [
    (["--methods", "ft,nope"], ["'nope'", "original", "retrain", "ft"]),
    (["--dataset", "imagenet"], ["'imagenet'", "digits", "cifar10", "svhn"]),
    (["--model", "vgg16"], ["'vgg16'", "small-cnn", "resnet18"]),
    (["--forget", "random:1.5"], ["random:1.5", "random:FRACTION", "class:K"]),
    (["--forget", "class:12"], ["12", "0..9"]),
    (["--forget", "class:3,3"], ["class:3,3", "class 3 given more than once"]),
    (["--methods", "ft", "--no-remain"], ["'ft'", "forget set only"]),
    (["--dataset", "cifar10", "--data-dir", "/nonexistent/lu-data"], ["/nonexistent/lu-data", "--download"]),
    (["--seeds", "0,x"], ["--seeds", "0,x"]),
    (["--augmentation", "mixup"], ["'mixup'", "auto", "crop_flip", "none"]),
    (["--dataset", "/nonexistent/tree"], ["/nonexistent/tree", "train/", "test/"]),
]


@pytest.mark.parametrize("extra, words", BAD_INPUTS, ids=[" ".join(e) for e, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, extra, words):
    out = tmp_path / "out"
    rc = main(["benchmark", "--quiet", "--cache-dir", str(tmp_path / "cache"), "--out", str(out), *extra])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("lightning-unlearn: error:")
    for w in words:
        assert w in err, (w, err)
    assert not out.exists()
    assert not (tmp_path / "cache" / "models").exists()  # nothing was trained


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = main(["benchmark", "--quiet", "--cache-dir", str(tmp_path / "cache"), "--out", str(blocker / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "not writable" in err and str(blocker / "out") in err
    assert blocker.read_text() == "x"


def test_module_entry_point_as_subprocess(tmp_path):
    """``python -m lightning_unlearn.cli``: a real (tiny) run, then a bad input's exit code 2."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lightning_unlearn.cli", "benchmark", "--cache-dir", str(tmp_path / "cache")]
    tiny = ["--max-train", "200", "--max-test", "100", "--epochs", "1", "--rmia-references", "0", "--max-trials", "0", "--quiet"]
    ok = subprocess.run([*cmd, *tiny, "--methods", "retrain", "--out", str(tmp_path / "ok")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert ok.returncode == 0, ok.stderr
    res = json.loads((tmp_path / "ok" / "results.json").read_text())
    assert list(res["methods"]) == ["original", "retrain"] and res["config"]["avg_gap_mia"] == "mia"
    assert "retrain" in ok.stdout
    bad = subprocess.run([*cmd, "--methods", "retrain,bogus", "--out", str(tmp_path / "o")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "'bogus'" in bad.stderr
    assert not (tmp_path / "o").exists()


def test_trainer_arguments_reach_every_trainer(tmp_path, monkeypatch):
    """--accelerator/--devices/--strategy go to every Lightning Trainer (original, retrained, references, unlearning)."""
    import lightning.pytorch as pl

    seen = []
    original_init = pl.Trainer.__init__

    def spy(self, *args, **kwargs):
        seen.append((kwargs.get("accelerator"), kwargs.get("devices"), kwargs.get("strategy")))
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "__init__", spy)
    rc = main([
        "benchmark", "--max-train", "200", "--max-test", "100", "--epochs", "1", "--unlearn-epochs", "1", "--methods", "ft",
        "--rmia-references", "2", "--max-trials", "0", "--quiet", "--accelerator", "cpu", "--devices", "1", "--strategy", "auto",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
    ])
    assert rc == 0
    assert len(seen) == 5  # original, retrained, 2 references, ft
    assert set(seen) == {("cpu", 1, "auto")}


@pytest.mark.slow
@pytest.mark.ddp
def test_benchmark_under_ddp_two_cpu_processes(tmp_path):
    """The whole command under strategy=ddp (2 gloo processes): every rank runs the stages, rank 0 writes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "lightning_unlearn.cli", "benchmark", "--max-train", "200", "--max-test", "100", "--epochs", "1",
        "--unlearn-epochs", "1", "--methods", "ft", "--rmia-references", "2", "--max-trials", "0", "--quiet",
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["config"]["strategy"] == "ddp" and res["config"]["devices"] == "2"
    assert SCHEMA_KEYS <= set(res["methods"]["ft"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]  # no stray temporary folders from rank 1
