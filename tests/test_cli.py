"""``lightning-unlearn benchmark``: end to end in process and as a module, and every bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_unlearn.cli import main
from lightning_unlearn.pipeline.output import MANIFEST, REPORT_FILES, STUDY_FILE

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "benchmarks" / "configs"
#: one cell (one original, one forget set, one retrained model); each method tuned with 1 trial on 2 tuning sets
ONE_CELL = ["--seeds", "0", "--forget-seeds", "0", "--retrain-models", "1", "--forget", "random:0.1"]
TINY = ["--max-train", "300", "--max-test", "150", "--epochs", "1", "--unlearn-epochs", "1", "--rmia-references", "2", "--max-trials", "1", "--quiet",
        *ONE_CELL]
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
    retrain = res["methods"]["retrain"]  # one retrained model per seed: the reference of every row (its own too)
    for name, m in res["methods"].items():  # Avg. Gap = ¼(|UA−UA*| + |RA−RA*| + |TA−TA*| + |RMIA−RMIA*|), recomputed from its terms
        assert m["avg_gap"] == pytest.approx(np.mean([abs(m[k] - retrain[k]) for k in ("ua", "ra", "ta", "rmia_auc")])), name
        assert m["avg_gap_mis"] == pytest.approx(np.mean([abs(m[k] - retrain[k]) for k in ("ua", "ra", "ta", "mia")])), name
    assert retrain["avg_gap"] == 0.0
    assert res["methods"]["ft"]["hparams"]["lr"] == 0.01 and len(res["tuning"]["ft"]) == 1 and res["tuning"]["ft"][0]["hparams"]["lr"] == 0.01
    assert {"report.md", "results.json", "rmia_roc.png", "avg_gap.png", "study.sqlite3"} <= {p.name for p in out.iterdir()}
    report = (out / "report.md").read_text()
    assert "![RMIA ROC curves (log FPR)](rmia_roc.png)" in report and "| ft |" in report
    assert {p.name for p in out.iterdir()} - {MANIFEST, STUDY_FILE} <= set(REPORT_FILES)  # the manifest lists every file written
    manifest = json.loads((out / MANIFEST).read_text())
    assert set(manifest["files"]) == {p.name for p in out.iterdir()} - {MANIFEST, STUDY_FILE} and manifest["storage"] == STUDY_FILE
    assert res["run"]["threads"] == 1  # --threads default
    printed = capsys.readouterr().out
    assert "original" in printed and "ft" in printed and "report:" in printed
    # the user keeps notes in the folder; a rerun without --overwrite refuses and changes nothing
    (out / "notes.txt").write_text("my notes")
    (out / "mine").mkdir()
    (out / "mine" / "a.txt").write_text("a")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    rerun = ["benchmark", *TINY, "--methods", "ft", "--tune-lrs", "0.01", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert main(rerun) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--overwrite" in err and str(out) in err
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # with --overwrite: the library's files are replaced, the user's stay; the rerun trains nothing and finds every run in the study
    assert main([*rerun, "--overwrite"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["run"]["models_trained"] == 0 and again["run"]["models_loaded"] == res["run"]["models_trained"]
    assert again["run"]["units_run"] == 0 and again["run"]["units_reused"] > 0
    assert again["methods"]["original"]["ua"] == res["methods"]["original"]["ua"]
    assert (out / "notes.txt").read_text() == "my notes" and (out / "mine" / "a.txt").read_text() == "a"


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
    (["--threads", "0"], ["--threads", "0"]),
    (["--dataset", "/nonexistent/tree"], ["/nonexistent/tree", "train/", "test/"]),
    (["--hparams", "trw.tau"], ["trw.tau", "METHOD.NAME=VALUE"]),
    (["--hparams", "ft.bogus=1"], ["'ft'", "bogus", "lr"]),
    (["--forget", "class:3", "--tune-class", "3"], ["tune_class", "3"]),
    (["--tune-class", "4"], ["tune_class", "class forgetting"]),
    (["--forget", "class:3", "--tune-class", "12,13"], ["tune_class 12", "0..9"]),
    (["--forget", "classes:3,11"], ["11", "0..9"]),
    (["--objectives", "avg_gap+kl"], ["'avg_gap+kl'", "class forgetting", "avg_gap"]),
    (["--stats-unit", "seed"], ["'seed'", "forget_set", "two_way_bootstrap"]),
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


def test_unwritable_cache_directory_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    rc = main(["benchmark", "--quiet", "--cache-dir", str(blocker / "cache"), "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not writable" in err and str(blocker / "cache") in err and "--cache-dir" in err
    assert not (tmp_path / "out").exists()


def _benchmark_parser():
    from lightning_unlearn.cli import build_parser

    parser = build_parser()
    return parser, parser._subcommands_action.choices["benchmark"]


def test_the_options_are_the_schema_nested_and_flat():
    """Every benchmark option is a config field (``--section.field``) or one of the run's options, every field is an
    option, and each field's flat spelling (``--max-train``) is generated from the same table."""
    from lightning_unlearn.pipeline.config import FLAT_FIELDS, SECTIONS, field_docs, section_fields
    from lightning_unlearn.pipeline.config_file import FLAT_OPTIONS, RUN_OPTIONS

    _, sub = _benchmark_parser()
    dests = {a.dest for a in sub._actions} - {"help", "config", "print_config"} - set(RUN_OPTIONS) - set(SECTIONS)
    fields = {f"{s}.{f}" for s, kind in SECTIONS.items() for f in section_fields(kind)}
    assert dests == fields
    assert FLAT_OPTIONS == {"--" + name.replace("_", "-"): f"{s}.{name}" for name, s in FLAT_FIELDS.items()}
    assert len(FLAT_FIELDS) == len(fields)  # flat names are unique over the sections
    for section, kind in SECTIONS.items():  # one docstring per field, shown by --help
        assert set(field_docs(kind)) == set(section_fields(kind)), section
    help_text = sub.format_help()
    assert "--data.max_train" in help_text and "Also --max-train." in help_text and "Stratified subset of the training set" in help_text


def test_flat_nested_and_python_spellings_build_the_same_config():
    from lightning_unlearn.cli import build_parser, config_from_args
    from lightning_unlearn.pipeline import BenchmarkConfig
    from lightning_unlearn.pipeline.config import TuningConfig, UnlearningConfig

    parser = build_parser()
    flat = parser.parse_args([
        "benchmark", "--out", "x", "--seeds", "0,1", "--methods", "ft,rl", "--augmentation", "none", "--tune-lrs", "0.1,0.01",
        "--hparams", "ft.lr=0.1,rl.label_mode=any", "--devices", "2", "--no-remain", "--max-train", "400",
    ])
    nested = parser.parse_args([
        "benchmark", "--out", "x", "--unlearning.seeds", "[0, 1]", "--unlearning.methods", "[ft, rl]", "--models.augmentation", "none",
        "--tuning.tune_lrs", "[0.1, 0.01]", "--unlearning.hparams", '{"ft": {"lr": 0.1}, "rl": {"label_mode": "any"}}',
        "--execution.devices", "2", "--data.no_remain", "true", "--data.max_train=400",
    ])
    nested_text = parser.parse_args([  # the comma text form is accepted in the nested spelling too
        "benchmark", "--out", "x", "--unlearning.seeds", "0,1", "--unlearning.methods", "ft,rl", "--augmentation", "none",
        "--tuning.tune_lrs", "0.1,0.01", "--unlearning.hparams", "ft.lr=0.1,rl.label_mode=any", "--devices", "2", "--no-remain=true",
        "--max-train", "400",
    ])
    from_python = BenchmarkConfig(
        seeds=(0, 1), methods=("ft", "rl"), augmentation=None, tune_lrs=(0.1, 0.01), hparams={"ft": {"lr": 0.1}, "rl": {"label_mode": "any"}},
        devices=2, no_remain=True, max_train=400,
    )
    from_text = BenchmarkConfig(
        seeds="0,1", methods="ft,rl", augmentation="none", tune_lrs="0.1,0.01", hparams="ft.lr=0.1,rl.label_mode=any", devices="2",
        no_remain=True, max_train=400,
    )
    from_sections = BenchmarkConfig(
        data={"no_remain": True, "max_train": 400}, models={"augmentation": "none"}, execution={"devices": "2"},
        unlearning=UnlearningConfig(seeds=(0, 1), methods=("ft", "rl"), hparams={"ft": {"lr": 0.1}, "rl": {"label_mode": "any"}}),
        tuning=TuningConfig(tune_lrs=(0.1, 0.01)),
    )
    assert config_from_args(flat) == config_from_args(nested) == config_from_args(nested_text) == from_python == from_text == from_sections
    assert from_python.seeds == from_python.unlearning.seeds == (0, 1) and from_python.max_train == from_python.data.max_train == 400
    assert from_python.replace(seeds=(3,), data=from_python.data).unlearning.seeds == (3,)
    assert from_python.to_dict()["seeds"] == [0, 1] and from_python.to_dict()["devices"] == "2"  # results.json stays flat


def test_print_config_loads_back_to_the_same_config(tmp_path, capsys):
    from lightning_unlearn.cli import build_parser, config_from_args
    from lightning_unlearn.pipeline.config_file import dump_config, load_config

    flags = ["--max-train", "400", "--forget", "class:3", "--seeds", "0,1,2", "--methods", "retrain,trw", "--hparams", "trw.tau=0.5",
             "--augmentation", "none", "--tune-class", "5", "--precision", "bf16-mixed", "--channels-last", "--data.max_test", "200"]
    assert main(["benchmark", *flags, "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert "data:\n" in printed and "  max_train: 400\n" in printed and "  - trw\n" in printed
    file = tmp_path / "run.yaml"
    file.write_text(printed)
    parser = build_parser()
    direct = config_from_args(parser.parse_args(["benchmark", *flags, "--out", "x"]))
    assert direct.max_train == 400 and direct.hparams == {"trw": {"tau": 0.5}} and direct.channels_last is True
    assert config_from_args(parser.parse_args(["benchmark", "--config", str(file), "--out", "x"])) == direct
    assert load_config(file) == direct
    (tmp_path / "again.yaml").write_text(dump_config(direct))
    assert load_config(tmp_path / "again.yaml") == direct
    # options are read left to right: after the file they override it, before it the file wins
    later = config_from_args(parser.parse_args(["benchmark", "--config", str(file), "--max-train", "50", "--out", "x"]))
    earlier = config_from_args(parser.parse_args(["benchmark", "--max-train", "50", "--config", str(file), "--out", "x"]))
    assert (later.max_train, earlier.max_train) == (50, 400) and later == direct.replace(max_train=50)


def test_a_partial_config_file_keeps_the_defaults_and_expands_variables(tmp_path, monkeypatch):
    from lightning_unlearn.pipeline import BenchmarkConfig, ConfigError
    from lightning_unlearn.pipeline.config_file import load_config

    tree = tmp_path / "data" / "tree"
    for split in ("train", "test"):
        (tree / split / "a").mkdir(parents=True)
    monkeypatch.setenv("LU_TEST_ROOT", str(tmp_path / "data"))
    file = tmp_path / "tree.yaml"
    file.write_text("data:\n  dataset: ${LU_TEST_ROOT}/tree\n  max_train: 100\nunlearning:\n  seeds: [1, 2]\n")
    cfg = load_config(file)
    assert cfg == BenchmarkConfig(dataset=str(tree), max_train=100, seeds=(1, 2))
    cfg.validate()
    monkeypatch.delenv("LU_TEST_ROOT")
    with pytest.raises(ConfigError, match="names the environment variable LU_TEST_ROOT, which is not set"):
        load_config(file).validate()


UNKNOWN = [
    (["--max-trian", "3"], ["'--max-trian'", "--max-train", "--max-trials"]),
    (["--data.bogus", "1"], ["'--data.bogus'", "section data has", "max_train", "forget"]),
    (["--data.max_train", "many"], ["--data.max_train", "--max-train", "int", "'many'"]),
    (["--seeds", "0,x"], ["--seeds", "0,x"]),
]


@pytest.mark.parametrize("extra, words", UNKNOWN, ids=[" ".join(e) for e, _ in UNKNOWN])
def test_unknown_options_and_bad_types_are_one_line(tmp_path, capsys, extra, words):
    assert main(["benchmark", "--out", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lightning-unlearn: error:"), err
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text, words",
    [
        ("data:\n  bogus: 1\n", ["bogus"]),
        ("bogus:\n  max_train: 1\n", ["bogus"]),
        ("data:\n  max_train: many\n", ["--data.max_train", "'many'"]),
    ],
    ids=["unknown field", "unknown section", "wrong type"],
)
def test_bad_config_files_are_one_line(tmp_path, capsys, text, words):
    from lightning_unlearn.pipeline import ConfigError
    from lightning_unlearn.pipeline.config_file import load_config

    file = tmp_path / "bad.yaml"
    file.write_text(text)
    assert main(["benchmark", "--config", str(file), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert "\n" not in str(info.value) and all(w in str(info.value) for w in words)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_a_config_file_with_a_key_twice_is_refused(tmp_path, capsys):
    from lightning_unlearn.pipeline import ConfigError
    from lightning_unlearn.pipeline.config_file import load_config

    file = tmp_path / "twice.yaml"
    file.write_text("data:\n  max_train: 300\nmodels:\n  epochs: 2\ndata:\n  forget: random:0.2\n")
    with pytest.raises(ConfigError, match="gives data twice"):
        load_config(file)
    assert main(["benchmark", "--config", str(file), "--out", str(tmp_path / "out")]) == 2
    assert "gives data twice" in capsys.readouterr().err


@pytest.mark.parametrize("preset", sorted(p.relative_to(PRESETS).as_posix() for p in PRESETS.glob("*/*.yaml")))
def test_preset_files_give_every_key_once(preset):
    from lightning_unlearn.pipeline.config_file import duplicate_keys

    assert duplicate_keys((PRESETS / preset).read_text()) == []


def test_unknown_python_keywords_name_the_allowed_ones():
    from lightning_unlearn.pipeline import BenchmarkConfig, ConfigError

    with pytest.raises(ConfigError) as info:
        BenchmarkConfig(max_trian=3)
    msg = str(info.value)
    assert "'max_trian'" in msg and "did you mean max_train or max_trials" in msg and "rmia_references" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="unknown data setting 'bogus': data has dataset, data_dir"):
        BenchmarkConfig(data={"bogus": 1})
    with pytest.raises(AttributeError, match="bogus"):
        _ = BenchmarkConfig().bogus


def test_module_entry_point_as_subprocess(tmp_path):
    """``python -m lightning_unlearn.cli``: a real (tiny) run, then a bad input's exit code 2."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "lightning_unlearn.cli", "benchmark", "--cache-dir", str(tmp_path / "cache")]
    tiny = ["--max-train", "200", "--max-test", "100", "--epochs", "1", "--rmia-references", "0", "--max-trials", "0", "--quiet", *ONE_CELL]
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
        "--rmia-references", "2", "--max-trials", "0", "--quiet", "--accelerator", "cpu", "--devices", "1", "--strategy", "auto", *ONE_CELL,
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
        "--unlearn-epochs", "1", "--methods", "ft", "--rmia-references", "2", "--max-trials", "0", "--quiet", *ONE_CELL,
        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["config"]["strategy"] == "ddp" and res["config"]["devices"] == "2"
    assert SCHEMA_KEYS <= set(res["methods"]["ft"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]  # no stray temporary folders from rank 1


# ---------------------------------------------------------------------------- interruption
def _start(tmp_path, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "lightning_unlearn.cli", "benchmark", "--methods", "ft", "--rmia-references", "0", "--max-trials", "0",
        "--max-train", "800", "--max-test", "300", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out"), *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _wait_for(proc, prefix: str, timeout: float = 300) -> list[str]:
    """Read stderr lines until one starts with ``prefix`` (a progress line: the next model is training)."""
    import selectors

    lines, sel = [], selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=1):
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith(prefix):
                return lines
    proc.kill()
    raise AssertionError(f"no {prefix!r} line on stderr: {''.join(lines)[-2000:]}")


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_training_exits_non_zero_keeps_the_cached_model_and_writes_nothing(tmp_path, sig, code):
    proc = _start(tmp_path)
    _wait_for(proc, "[train models 1/")  # the original model is done and cached; the retrained model is training
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-2000:]
    last = err.strip().splitlines()[-1]
    name = signal.Signals(sig).name
    assert last == (
        f"lightning-unlearn: interrupted by {name}: no results were written ({tmp_path / 'out'} is unchanged); "
        f"1 model trained before the interruption is kept in the cache {tmp_path / 'cache'} (a rerun reuses it)"
    ), err[-2000:]
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no output folder, no temporary folder
    models = list((tmp_path / "cache" / "models").iterdir())
    assert len(models) == 1 and models[0].suffix == ".pt"  # the original model, and no temporary file
    assert isinstance(torch.load(models[0], weights_only=True), dict)  # complete (the rerun test above shows reuse)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_inside_trainer_fit_becomes_interrupted(digits_dm, sig):
    """Lightning's own handling (exit(1) on KeyboardInterrupt, its SIGTERM connector) does not swallow it."""
    import lightning.pytorch as pl

    from lightning_unlearn.models import build_model
    from lightning_unlearn.pipeline.interrupt import Interrupted, handle_signals
    from lightning_unlearn.training import ClassifierModule
    from lightning_unlearn.training.fit import make_trainer

    class SignalAt(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 2:
                os.kill(os.getpid(), sig)

    before = signal.getsignal(sig)
    net = build_model("small-cnn", in_channels=1, num_classes=10, mean=digits_dm.mean, std=digits_dm.std)
    trainer = make_trainer(max_epochs=1, callbacks=[SignalAt()])
    with pytest.raises(Interrupted) as info:
        with handle_signals():
            trainer.fit(ClassifierModule(net, num_classes=10), train_dataloaders=digits_dm.make_loader(digits_dm.train_set(), shuffle=True))
    assert info.value.signum == sig and info.value.exit_code == 128 + sig
    assert trainer.interrupted and trainer.global_step == 3
    assert signal.getsignal(sig) is before  # the previous handler is back
