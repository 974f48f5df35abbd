"""The GPU benchmark: its --tiny mode runs the same code on CPU end to end; its pack loader restores the files."""

import json
import math
from pathlib import Path

import helpers
import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_cifar10.py"


def load_script():
    return helpers.load_script(SCRIPT)


def test_unpack_restores_the_packed_files_byte_for_byte(tmp_path):
    # a pack in the documented format: names joined by newlines (uint8), offsets (F + 1), concatenated bytes
    files = {"train/cat/0001.jpg": b"\xff\xd8cat-one", "train/dog/0002.jpg": b"\xff\xd8dog", "test/cat/0003.jpg": b"\xff\xd8"}
    blobs = list(files.values())
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    names = np.frombuffer("\n".join(files).encode(), dtype=np.uint8)
    np.savez(tmp_path / "pack.npz", names=names, offsets=offsets, data=np.frombuffer(b"".join(blobs), dtype=np.uint8))
    mod = load_script()
    tree = mod.unpack(tmp_path / "pack.npz", tmp_path / "tree")
    for rel, content in files.items():
        assert (tree / rel).read_bytes() == content
    (tree / "train/cat/0001.jpg").write_bytes(b"changed")
    mod.unpack(tmp_path / "pack.npz", tmp_path / "tree")  # already unpacked from this pack: left alone
    assert (tree / "train/cat/0001.jpg").read_bytes() == b"changed"


def test_write_pack_then_unpack_gives_the_same_tree(tmp_path):
    files = {"train/cat/a.jpg": b"\xff\xd8a", "train/cat/b.jpg": b"", "train/dog/c.jpg": b"\xff\xd8" * 50, "test/dog/d.jpg": b"d"}
    for rel, content in files.items():
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_bytes(content)
    mod = load_script()
    assert mod.main(["--write-pack", str(tmp_path / "src"), "--pack", str(tmp_path / "p.npz")]) == {}
    names = np.load(tmp_path / "p.npz")["names"].tobytes().decode().split("\n")
    assert names == sorted(files, key=lambda r: (r.split("/")[0] != "train", r))  # train first, then test, sorted within
    tree = mod.unpack(tmp_path / "p.npz", tmp_path / "tree")
    assert {str(p.relative_to(tree)): p.read_bytes() for p in tree.rglob("*.jpg")} == files


@pytest.mark.slow
def test_gpu_cifar10_tiny_runs_on_cpu(tmp_path, monkeypatch):
    monkeypatch.delenv("LIGHTNING_UNLEARN_DATA", raising=False)  # digits: runs anywhere
    mod = load_script()
    # digits: the originals' auto recipe is no augmentation; the unlearning phase is forced to crop+flip
    summary = mod.main(["--tiny", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), "--unlearn-augmentation", "crop_flip"])
    written = json.loads((tmp_path / "out" / "gpu_cifar10.json").read_text())
    assert written["device"].startswith("CPU") and written["tiny"] is True
    expected = {"original", "retrain"} | {f"{m}_{s}" for s, ms in mod.METHODS.items() for m in ms}
    assert set(written["models"]) == expected
    for name, v in written["models"].items():
        for key in ("ua", "ra", "ta", "mia", "rmia_auc", "avg_gap", "avg_gap_mis"):
            assert math.isfinite(v[key]), (name, key, v)
    assert written["models"]["retrain"]["avg_gap"] == 0.0
    assert set(written["jobs"]) >= expected - {"retrain", "original"} | {"attack", "ref0", "ref1"}
    assert 0 <= written["transfer_to_retrain"]["prob"] <= 100 and written["transfer_to_retrain"]["n"] > 0
    assert written["config"]["refs"] == 2 and summary["models"] == written["models"]
    assert "paper RMIA" in (tmp_path / "out" / "gpu_cifar10.md").read_text()
    recipes = written["recipes"]
    assert recipes["original"]["augmentation"] == "none" and recipes["original"]["setting"] == "auto"
    assert recipes["unlearning"]["augmentation"] == "crop_flip" and recipes["unlearning"]["adversarial_set"] == "none"
    unlearn_jobs = [j for j in written["jobs"].values() if "method" in j]
    assert unlearn_jobs and all(j["augmentation"] == "crop_flip" for j in unlearn_jobs)  # every method's request
    assert "crop_flip on D_R and D_F" in (tmp_path / "out" / "gpu_cifar10.md").read_text()


def test_the_protocol_at_paper_scale_is_the_cifar10_resnet18_preset(tmp_path):
    mod = load_script()
    cfg, _ = mod.parse_args(["--protocol", "--data", str(tmp_path / "tree"), "--out", str(tmp_path / "out"), "--workers", "4"])
    argv = mod.protocol_argv(cfg)
    assert argv[:4] == ["--preset", "cifar10-resnet18", "--data", str(tmp_path / "tree")]
    assert argv[argv.index("--workers") + 1] == "4" and argv[argv.index("--out") + 1] == str(tmp_path / "out" / "protocol")
    from lightning_unlearn.pipeline.config_file import load_config

    preset = load_config(helpers.ROOT / "benchmarks" / "configs" / "random_forget" / "cifar10-resnet18.yaml", dataset=str(tmp_path / "tree"))
    assert (preset.model, preset.max_train, preset.max_test) == ("resnet18", None, None)  # all of CIFAR-10, ResNet-18
    assert (len(preset.seeds), len(preset.forget_seeds), preset.retrain_models) == (3, 3, 3)  # the reference's 3 x 3 x 3
    assert (preset.max_trials, preset.tune_sets) == (21, 2)


@pytest.mark.slow
def test_gpu_cifar10_tiny_protocol_runs_the_fair_comparison_on_cpu(tmp_path, monkeypatch):
    monkeypatch.delenv("LIGHTNING_UNLEARN_DATA", raising=False)
    mod = load_script()
    summary = mod.main(["--tiny", "--protocol", "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    assert summary["protocol"][:2] == ["--preset", "digits"]
    [run] = [p for p in (tmp_path / "out" / "protocol").rglob("results.json")]
    res = json.loads(run.read_text())
    assert set(res["methods"]) >= {"original", "retrain", "ft", "rl", "amun"}
    assert res["config"]["max_trials"] == 1 and res["config"]["retrain_models"] == 2
    assert all(math.isfinite(res["methods"][m]["avg_gap"]) for m in ("ft", "rl", "amun"))
    assert "Verdict" in (run.parent / "report.md").read_text()
