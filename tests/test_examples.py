"""Every example in ``examples/`` runs in its tiny mode and does what its header says.

Each example's ``main(tiny=True)`` trains on a 300-400 image subset of the embedded digits data
(a few seconds); the DDP example starts the main job as two gloo processes. The examples write
only under ``$LIGHTNING_UNLEARN_CACHE``, pointed at a temporary folder here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import load_script

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def load_example(name: str):
    """Import ``examples/<name>.py`` as a module (the folder is not a package)."""
    return load_script(EXAMPLES / f"{name}.py", f"example_{name}")


@pytest.fixture
def example_cache(tmp_path, monkeypatch) -> Path:
    """Decoded pools and reference models of the examples go to a temporary cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LIGHTNING_UNLEARN_CACHE", str(cache))
    return cache


def test_every_example_has_a_test():
    tested = {"amun_own_module", "trw_class_forgetting", "audit_in_validation_step", "ddp_main_job", "fastclip_trainer", "own_module_and_data"}
    assert {p.stem for p in EXAMPLES.glob("*.py")} <= tested


def test_amun_on_a_users_own_module(example_cache):
    ex = load_example("amun_own_module")
    res = ex.main(tiny=True)
    model, d_a = res["model"], res["adversarial"]
    # the user's own class (not the library's ClassifierModule), back in its normal phase
    assert isinstance(model, ex.DigitsCNN) and not model.is_unlearning
    # D_A was built on the user's module: one example per forget sample (40 of 400), each
    # labelled with the model's own wrong prediction, inside its radius and the pixel box
    assert len(d_a) == 40 and res["attack"]["size"] == 40
    assert bool((d_a.y != d_a.y_true).all())
    assert bool((d_a.delta <= d_a.eps + 1e-5).all()) and float(d_a.x.min()) >= 0.0 and float(d_a.x.max()) <= 1.0
    # fine-tuning on wrong-labelled adversarial examples did not wreck the model (AMUN's point)
    assert abs(res["amun"]["test"] - res["original"]["test"]) <= 5.0
    assert res["amun"]["remain"] >= res["original"]["remain"] - 5.0
    # the gold standard never saw D_F: it is less accurate there than the original
    assert res["retrained"]["forget"] < res["original"]["forget"]


def test_trw_class_forgetting_on_a_users_own_module(example_cache):
    ex = load_example("trw_class_forgetting")
    res = ex.main(tiny=True)
    before, after, gold = res["original"], res["trw"], res["retrained"]
    assert before["forget_train"] > 80.0 and before["forget_test"] > 80.0  # the original knows class 3
    assert after["forget_train"] == 0.0 and after["forget_test"] == 0.0  # TRW removed it, as retraining does
    assert gold["forget_test"] == 0.0
    assert after["remain_test"] >= before["remain_test"] - 5.0  # and kept the other classes
    assert after["forget_test_predicted_as"][ex.FORGET_CLASS] == 0
    s = torch.tensor(res["similarity"])
    assert s[ex.FORGET_CLASS] == 0 and float(s.sum()) == pytest.approx(1.0, abs=1e-5)


def test_audit_logged_from_validation_step_equals_a_direct_computation(example_cache):
    """The RMIA and MIA-efficacy values logged from the user's validation_step (three loaders,
    split from dataloader_idx) equal the functional core run on the model's outputs directly."""
    from lightning_unlearn.metrics import functional as MF

    ex = load_example("audit_in_validation_step")
    res = ex.main(tiny=True)
    assert [a["epoch"] for a in res["original"]] == [3, 6]
    last = res["original"][-1]
    assert set(last) == {"epoch", "rmia/ft_auc", "rmia/fr_auc", "rmia/rt_auc", "rmia/ft_tpr@0.01", "mia_efficacy"}

    dm, model, ref = res["dm"], res["model"], res["ref_signals"]
    model.eval()
    with torch.no_grad():
        sets = {name: ds for name, ds in (("forget", dm.forget_set()), ("remain", dm.remain_set()), ("test", dm.test_set()))}
        logits = {name: model(ds.x) for name, ds in sets.items()}
    labels = {name: ds.y for name, ds in sets.items()}
    index = {name: ds.index for name, ds in sets.items()}
    # RMIA: population = every audited sample except x itself; FT AUC = forget (1) vs test (0)
    z = torch.cat([logits[n] for n in ex.SPLITS])
    y = torch.cat([labels[n] for n in ex.SPLITS])
    idx = torch.cat([index[n] for n in ex.SPLITS])
    sig = MF.softmax_signal(z, y)
    scores = MF.rmia_scores(sig, ref[:, idx], sig, ref[:, idx], gamma=ex.GAMMA, self_index=torch.arange(len(idx)))
    n_f, n_r = len(labels["forget"]), len(labels["remain"])
    ft = torch.cat([scores[:n_f], scores[n_f + n_r :]])
    ft_labels = torch.cat([torch.ones(n_f, dtype=torch.long), torch.zeros(len(labels["test"]), dtype=torch.long)])
    assert last["rmia/ft_auc"] == pytest.approx(MF.roc_auc(ft, ft_labels), abs=1e-4)
    # SVC MIA-efficacy: |D_T| shadow members drawn from D_R (seed 0), non-members D_T, targets D_F
    probs = {n: torch.softmax(v, 1) for n, v in logits.items()}
    members = MF.select_shadow_members(index["remain"], len(labels["test"]), seed=0)
    expected = MF.mia_efficacy(
        probs["remain"][members], labels["remain"][members], probs["test"], labels["test"], probs["forget"], labels["forget"]
    )
    assert last["mia_efficacy"] == pytest.approx(expected, abs=1e-4)
    assert 0.0 <= res["retrained"]["rmia/ft_auc"] <= 100.0


def test_own_module_and_own_xy_data(example_cache):
    """A plain LightningModule with (x, y) loaders: FastClip, AMUN by mixin, RL by unlearn(), TRW, and the
    audits logged from validation_step equal the functional core on the model's outputs."""
    from lightning_unlearn.metrics import functional as MF

    ex = load_example("own_module_and_data")
    res = ex.main(tiny=True)
    splits = res["splits"]
    # the index rule: forget first, then remain, then test, by position (30 + 270 + 100 of 400 images)
    assert splits.positional == {"forget": 0, "remain": 30, "test": 300} and splits.size == 400
    assert res["request"].positional == {"forget": 0, "remain": 30}
    # FastClip clipped during the ordinary training, every layer within 1% of the bound after each event
    clip = res["fastclip"]
    assert clip.num_events >= 3 and all(r.norm_after <= 1.01 * ex.MAX_NORM for r in clip.records)
    # AMUN's adversarial set comes from the forget set's pool indices
    d_a = res["method"].adversarial
    assert len(d_a) + d_a.n_unresolved == 30 and set(d_a.index.tolist()) <= set(range(30))
    amun = res["models"]["amun"]
    assert isinstance(amun, ex.DigitsNet) and not amun.is_unlearning
    # the audit logged through self.log("mia/svc", metric) equals the functional SVC efficacy
    amun.eval()
    with torch.no_grad():
        logits = {n: amun(ex.standardise(splits.part(n).x)) for n in ("forget", "remain", "test")}
    labels = {n: splits.part(n).y for n in ("forget", "remain", "test")}
    probs = {n: torch.softmax(v.double(), 1) for n, v in logits.items()}
    members = MF.select_shadow_members(splits.index_of("remain"), 100, seed=0)
    want = MF.mia_efficacy(probs["remain"][members], labels["remain"][members], probs["test"], labels["test"], probs["forget"], labels["forget"])
    assert res["amun"]["mia/svc"] == pytest.approx(want, abs=1e-4)
    acc = {n: 100.0 * float((logits[n].argmax(1) == labels[n]).double().mean()) for n in logits}
    assert res["amun"]["acc/ta"] == pytest.approx(acc["test"], abs=1e-4) and res["amun"]["acc/ua"] == pytest.approx(acc["forget"], abs=1e-4)
    for audit in (res["original"], res["amun"], res["rl"], res["retrained"]):
        assert 0.0 <= audit["rmia/ft_auc"] <= 100.0 and 0.0 <= audit["mia/svc"] <= 100.0
    # the original learned the task; TRW removed class 3 and kept the others
    assert res["original"]["acc/ta"] > 80.0
    (before_3, before_rest), (after_3, after_rest) = res["trw"]["original"], res["trw"]["trw"]
    assert before_3 > 80.0 and after_3 == 0.0 and after_rest >= before_rest - 10.0


@pytest.mark.slow
@pytest.mark.ddp
def test_main_job_on_two_cpu_processes(tmp_path, example_cache):
    ex = load_example("ddp_main_job")
    out = tmp_path / "out"
    res = ex.main(tiny=True, out=str(out), cache_dir=str(example_cache))
    assert res["config"]["strategy"] == "ddp" and res["config"]["devices"] == "2" and res["config"]["accelerator"] == "cpu"
    assert list(res["methods"]) == ["original", "retrain", "ft"]
    assert res["methods"]["original"]["ta"] > 50.0  # the two processes trained a real model
    assert res["methods"]["retrain"]["avg_gap"] == 0.0
    assert (out / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "out"]  # rank 1 wrote nothing else


def dense_operator_norm(module: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """sigma_1 of x -> module(x) - module(0) at ``input_shape``, from the explicit Jacobian (float64 SVD)."""
    n = int(torch.tensor(input_shape).prod())
    with torch.no_grad():
        basis = torch.eye(n).reshape(n, *input_shape)
        jac = (module(basis) - module(torch.zeros(1, *input_shape))).reshape(n, -1).double()
    return float(torch.linalg.matrix_norm(jac, ord=2))


def test_fastclip_added_to_a_training_script(tmp_path, example_cache):
    ex = load_example("fastclip_trainer")
    res = ex.main(tiny=True, out=str(tmp_path / "norms.png"), log_dir=str(tmp_path / "logs"))
    clip, c, records = res["fastclip"], res["max_norm"], res["records"]
    # one event every `every` optimizer steps, one record per clipped layer per event
    assert clip.num_events == res["steps"] // res["every"] >= 3
    layers = set(clip.layer_shapes)
    assert len(layers) == 6 and {r.layer for r in records} == layers and len(records) == len(layers) * clip.num_events
    # the default mode certifies every event; at least one layer started above the bound, so clipping happened
    assert all(r.certified for r in records) and any(r.norm_before > 1.01 * c for r in records)
    assert all(r.norm_after <= 1.01 * c for r in records)
    # the run ends on an event, so the final weights are the clipped ones: every layer's true norm,
    # from a dense SVD of its explicit Jacobian, is within the bound, and an exactly solved layer's
    # record is its true norm
    assert res["steps"] % res["every"] == 0
    net = res["model"]
    last = {r.layer: r for r in records if r.event == clip.num_events}
    for name, shape in clip.layer_shapes.items():
        true = dense_operator_norm(net.get_submodule(name), shape)
        assert true <= 1.01 * c, (name, true)
        if last[name].exact:
            assert last[name].norm_after == pytest.approx(true, rel=1e-4)
    assert (tmp_path / "norms.png").stat().st_size > 0
    # the norms reach trainer.callback_metrics: EarlyStopping monitored the first convolution's at
    # every epoch end (it raises when the key is missing) and kept the smallest; the final value is
    # the last one FastClip logged for that layer
    sigma = [(step, v) for step, layer, kind, v in clip.history if layer == "model.net.features.0" and kind == "sigma"]
    assert res["monitored"] == sigma[-1][1]
    per_epoch = res["steps"] // 3  # tiny: 3 epochs
    at_epoch_ends = [[v for step, v in sigma if step <= e * per_epoch][-1] for e in (1, 2, 3)]
    early = res["early_stopping"]
    assert early.stopped_epoch == 0 and float(early.best_score) == min(at_epoch_ends)
