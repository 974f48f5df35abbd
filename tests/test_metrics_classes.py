"""The torchmetrics classes equal the functional form over batches, with padding duplicates removed, on 1 and 2 processes."""

from __future__ import annotations

import os

import lightning.pytorch as pl
import pytest
import torch
from helpers import spawn_gloo

from lightning_unlearn.metrics import MIANN, RMIA, SPLITS, IncompleteSplitsWarning, MIAEfficacy, SymmetricKL, UnlearningAccuracy
from lightning_unlearn.metrics import functional as F

N_FORGET, N_REMAIN, N_TEST, K = 60, 180, 60, 5

# small synthetic sets: Taylor signals get floored and TPR at low FPR is noisy; both warn by design
pytestmark = [
    pytest.mark.filterwarnings("ignore::lightning_unlearn.metrics.functional.FlooredSignalWarning"),
    pytest.mark.filterwarnings("ignore::lightning_unlearn.metrics.functional.LowFPRVarianceWarning"),
]


def make_records(seed: int = 0) -> dict[str, torch.Tensor]:
    """A pool of 300 samples (forget 0-59, remain 60-239, test 240-299) with member-like confident logits."""
    g = torch.Generator().manual_seed(seed)
    n = N_FORGET + N_REMAIN + N_TEST
    index = torch.arange(n)
    split = torch.cat([torch.full((N_FORGET,), SPLITS["forget"]), torch.full((N_REMAIN,), SPLITS["remain"]), torch.full((N_TEST,), SPLITS["test"])])
    labels = torch.randint(0, K, (n,), generator=g)
    logits = torch.randn(n, K, generator=g) * 2
    boost = torch.where(split == SPLITS["test"], 1.0, 3.0) * torch.rand(n, generator=g) * 2
    logits[index, labels] += boost
    ref = torch.rand(4, n, generator=g) * 0.8 + 0.1
    membership = torch.rand(4, n, generator=g) < 0.5
    membership[0] = ~membership[1]  # every sample OUT for at least one model
    is_member = (index % 3 == 0).long()  # MIA-NN labels, for the same logits
    return dict(index=index, split=split, labels=labels, logits=logits, ref=ref, membership=membership, is_member=is_member)


def shard_with_padding(n: int, rank: int, world: int, seed: int = 1) -> torch.Tensor:
    """Positions of rank's records: a shuffled uneven split, padded (like DistributedSampler) with
    duplicates of the first positions so that every rank has the same count."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = int(n * 0.58)
    shards = [perm[:cut], perm[cut:]] if world == 2 else [perm]
    size = max(len(s) for s in shards)
    s = shards[rank]
    return torch.cat([s, perm[: size - len(s)]])


def feed(metric, rec, positions, kind: str, batch: int = 37):
    for start in range(0, len(positions), batch):
        p = positions[start : start + batch]
        if kind == "mia_nn":
            metric.update(rec["logits"][p], rec["is_member"][p], rec["index"][p])
        elif kind == "fade":
            metric.update(rec["logits"][p], torch.stack([rec["logits"][p] * 0.5, rec["logits"][p].roll(1, 1)]), rec["index"][p])
        else:
            metric.update(rec["logits"][p], rec["labels"][p], rec["index"][p], rec["split"][p])


def build_metrics(rec, dtype=torch.float64):
    """Every metric class, with results in ``dtype`` (float64: compared exactly with the functional core)."""
    metrics = {
        "rmia": RMIA(rec["ref"], gamma=2.0),
        "rmia_offline": RMIA(rec["ref"], membership=rec["membership"], offline_a=0.3, signal="sm_taylor_softmax"),
        "svc": MIAEfficacy(),
        "mia_nn": MIANN(forget_class=2, neighbors=[0, 4], n_repeats=2),
        "fade": SymmetricKL(),
        "acc": UnlearningAccuracy(),
    }
    return {name: m.set_dtype(dtype) for name, m in metrics.items()}


def kind_of(name: str) -> str:
    return {"mia_nn": "mia_nn", "fade": "fade"}.get(name, "split")


def computed(metric):
    v = metric.compute()
    return {k: float(x) for k, x in v.items()} if isinstance(v, dict) else float(v)


# ----------------------------------------------------------------------------- expected values (functional)
def expected(rec) -> dict:
    logits, labels, split, index = rec["logits"], rec["labels"], rec["split"], rec["index"]
    out = {}
    for name, kwargs, sig in (
        ("rmia", dict(gamma=2.0), F.softmax_signal(logits, labels)),
        ("rmia_offline", dict(offline_a=0.3, ref_x_mask=~rec["membership"], ref_z_mask=~rec["membership"]), F.taylor_softmax_signal(logits, labels)),
    ):
        scores = F.rmia_scores(sig, rec["ref"], sig, rec["ref"], self_index=index, **kwargs)
        f, r, t = (split == SPLITS[s] for s in ("forget", "remain", "test"))
        out[name] = {
            "ft_auc": F.roc_auc(torch.cat([scores[f], scores[t]]), torch.cat([torch.ones(f.sum()), torch.zeros(t.sum())]).long()),
            "fr_auc": F.roc_auc(torch.cat([scores[r], scores[f]]), torch.cat([torch.ones(r.sum()), torch.zeros(f.sum())]).long()),
            "rt_auc": F.roc_auc(torch.cat([scores[r], scores[t]]), torch.cat([torch.ones(r.sum()), torch.zeros(t.sum())]).long()),
            "ft_tpr@0.01": F.tpr_at_fpr(torch.cat([scores[f], scores[t]]), torch.cat([torch.ones(f.sum()), torch.zeros(t.sum())]).long(), 0.01),
            "ft_tpr@0.001": F.tpr_at_fpr(torch.cat([scores[f], scores[t]]), torch.cat([torch.ones(f.sum()), torch.zeros(t.sum())]).long(), 0.001),
        }
    probs = torch.softmax(logits, 1)
    f, r, t = (torch.nonzero(split == SPLITS[s]).flatten() for s in ("forget", "remain", "test"))
    members = r[F.select_shadow_members(index[r], len(t), seed=0)]
    out["svc"] = F.mia_efficacy(probs[members], labels[members], probs[t], labels[t], probs[f], labels[f])
    nn_out = F.mia_nn(F.mia_nn_features(logits, [0, 4], 2), rec["is_member"], n_repeats=2)
    out["mia_nn"] = {**nn_out, "auc_gap": float("nan"), "acc_gap": float("nan")}
    out["fade"] = F.fade(logits, [logits * 0.5, logits.roll(1, 1)])
    out["acc"] = {k: float((logits[p].argmax(1) == labels[p]).double().mean() * 100) for k, p in (("ua", f), ("ra", r), ("ta", t))}
    return out


def assert_same(got, want, exact=True):
    if isinstance(want, dict):
        assert set(got) == set(want)
        for k in want:
            assert_same(got[k], want[k], exact)
        return
    if want != want:  # nan
        assert got != got
    elif exact:
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12)
    else:
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_metrics_over_batches_with_padding_equal_functional():
    rec = make_records()
    want = expected(rec)
    n = rec["index"].numel()
    # one process: shuffled order, several batches, plus duplicated (padding) records
    positions = torch.cat([shard_with_padding(n, 0, 1), torch.arange(7), torch.arange(100, 104)])
    for name, metric in build_metrics(rec).items():
        feed(metric, rec, positions, kind_of(name))
        assert_same(computed(metric), want[name], exact=name != "fade")


def test_rmia_last_scores_and_population_subset():
    rec = make_records()
    sig = F.softmax_signal(rec["logits"], rec["labels"])
    m = RMIA(rec["ref"], population_splits=("remain", "test"))
    feed(m, rec, torch.arange(300), "split")
    m.compute()
    pop = torch.arange(60, 300)
    si = torch.where(rec["index"] >= 60, rec["index"] - 60, torch.full_like(rec["index"], -1))
    want = F.rmia_scores(sig, rec["ref"], sig[pop], rec["ref"][:, pop], self_index=si)
    assert torch.equal(m.last_scores["score"], want)
    assert torch.equal(m.last_scores["index"], rec["index"])


def test_metric_subsample_seeds_average():
    rec = make_records()
    m = RMIA(rec["ref"], subsample_seeds=(0, 1, 2))
    feed(m, rec, torch.arange(300), "split")
    out = computed(m)
    scores, split = m.last_scores["score"], m.last_scores["split"]
    pos, neg = torch.nonzero(split == SPLITS["remain"]).flatten(), torch.nonzero(split == SPLITS["test"]).flatten()
    aucs = []
    for s in (0, 1, 2):  # AMUN: both sets subsampled to the smaller size with seeds 0, 1, 2
        gen = torch.Generator().manual_seed(s)
        p, q = pos[torch.randperm(len(pos), generator=gen)[:60]], neg[torch.randperm(len(neg), generator=gen)[:60]]
        aucs.append(F.roc_auc(torch.cat([scores[p], scores[q]]), torch.cat([torch.ones(60), torch.zeros(60)]).long()))
    assert out["rt_auc"] == pytest.approx(sum(aucs) / 3, rel=1e-6)  # float32 result (the default dtype)


@pytest.mark.filterwarnings("ignore:.*was called before the ``update``.*")
def test_metric_invalid_inputs():
    rec = make_records()
    with pytest.raises(ValueError, match="before any update"):
        MIAEfficacy().compute()
    m = MIAEfficacy()
    m.update(rec["logits"][:5], rec["labels"][:5], rec["index"][:5], "forget")
    m.update(rec["logits"][:5], (rec["labels"][:5] + 1) % K, rec["index"][:5], "forget")
    with pytest.raises(ValueError, match="different labels"):
        m.compute()
    with pytest.raises(ValueError, match="split must be one of"):
        MIAEfficacy().update(rec["logits"][:5], rec["labels"][:5], rec["index"][:5], "train")
    m2 = MIAEfficacy()  # a missing split gives nan (as RMIA's and UnlearningAccuracy's missing pairs), with a warning naming it
    feed(m2, rec, torch.arange(200), "split")
    with pytest.warns(IncompleteSplitsWarning, match=r"none of \['test'\]"):
        assert torch.isnan(m2.compute())
    with pytest.raises(ValueError, match="outside the reference signals"):
        RMIA(rec["ref"][:, :100]).update(rec["logits"][:5], rec["labels"][:5], rec["index"][:5] + 100, "forget")
    holes = rec["ref"].clone()
    holes[:, 5] = float("nan")
    m3 = RMIA(holes)
    feed(m3, rec, torch.arange(300), "split")
    with pytest.raises(ValueError, match=r"missing \(nan/inf\) for 1 recorded pool indices, e.g. \[5\]"):
        m3.compute()
    with pytest.raises(ValueError, match="gamma"):
        RMIA(rec["ref"], gamma=0.0)
    with pytest.raises(ValueError, match="offline_a"):
        RMIA(rec["ref"], membership=rec["membership"], offline_a=2.0)
    with pytest.raises(ValueError, match="membership"):
        RMIA(rec["ref"], offline_a=0.3)
    with pytest.raises(ValueError, match="neighbors"):
        MIANN(forget_class=2, neighbors=[2])
    with pytest.raises(ValueError, match="is_member must be binary"):
        MIANN(forget_class=2, neighbors=[1]).update(rec["logits"][:4], torch.tensor([0, 1, 2, 1]), torch.arange(4))


def test_rmia_refuses_one_index_under_two_splits_and_conflicting_rows_but_keeps_exact_duplicates():
    rec = make_records()
    both = RMIA(rec["ref"])
    feed(both, rec, torch.arange(300), "split")
    both.update(rec["logits"][[250]], rec["labels"][[250]], torch.tensor([17]), "test")  # sample 17 is in D_F
    with pytest.raises(ValueError, match="pool index 17 was recorded under two splits, 'forget' and 'test'"):
        both.compute()
    conflict = RMIA(rec["ref"])
    feed(conflict, rec, torch.arange(300), "split")
    other = rec["logits"][[42]] + torch.tensor([[5.0] + [0.0] * (K - 1)])
    conflict.update(other, rec["labels"][[42]], torch.tensor([42]), "forget")
    with pytest.raises(ValueError, match="pool index 42 was recorded twice under split 'forget' with different target_signal"):
        conflict.compute()
    # the same rows again (DDP padding) and rows equal up to float noise are one sample
    dup = RMIA(rec["ref"], gamma=2.0)
    feed(dup, rec, torch.arange(300), "split")
    dup.update(rec["logits"][:5], rec["labels"][:5], rec["index"][:5], "forget")
    dup.update(rec["logits"][5:8] * (1 + 1e-7), rec["labels"][5:8], rec["index"][5:8], "forget")
    clean = RMIA(rec["ref"], gamma=2.0)
    feed(clean, rec, torch.arange(300), "split")
    assert computed(dup) == computed(clean)


def test_metric_flags():
    for cls in (RMIA, MIAEfficacy, MIANN, SymmetricKL, UnlearningAccuracy):
        assert cls.full_state_update is False and cls.is_differentiable is False
    assert RMIA.higher_is_better is None and MIAEfficacy.higher_is_better is None and MIANN.higher_is_better is None
    assert SymmetricKL.higher_is_better is False


# ----------------------------------------------------------------------------- DDP (2 CPU processes, gloo)
def _ddp_worker(rank: int, world: int, out_dir: str) -> None:
    rec = make_records()
    positions = shard_with_padding(rec["index"].numel(), rank, world)
    results = {}
    for name, metric in build_metrics(rec).items():
        metric.check_ranks_agree = True  # all-reduce the result and require equality
        feed(metric, rec, positions, kind_of(name), batch=29 + 8 * rank)  # different batch counts per rank
        results[name] = computed(metric)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.ddp
def test_metrics_ddp_two_processes_equal_single_process(tmp_path):
    rec = make_records()
    n = rec["index"].numel()
    assert len(shard_with_padding(n, 0, 2)) == len(shard_with_padding(n, 1, 2))  # padded to equal length
    spawn_gloo(_ddp_worker, str(tmp_path))
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    want = expected(rec)
    single = {}
    for name, metric in build_metrics(rec).items():
        feed(metric, rec, torch.arange(n), kind_of(name))
        single[name] = computed(metric)
    for name in want:
        assert_same(r0[name], r1[name])  # identical on both ranks
        assert_same(r0[name], single[name], exact=name != "fade")  # equal to one process
        assert_same(r0[name], want[name], exact=name != "fade")  # and to the functional form


# ----------------------------------------------------------------------------- DDP through a Lightning Trainer
class AuditModule(pl.LightningModule):
    """Replays stored logits as the 'model output' and audits them in validation."""

    def __init__(self, rec):
        super().__init__()
        self.rmia = RMIA(rec["ref"], gamma=2.0, check_ranks_agree=True)
        self.svc = MIAEfficacy(check_ranks_agree=True)
        self.acc = UnlearningAccuracy()
        self.stored_logits = rec["logits"]
        self.n_seen = 0

    def validation_step(self, batch, batch_idx):
        labels, index, split = batch
        self.n_seen += len(index)
        logits = self.stored_logits[index]
        for m in (self.rmia, self.svc, self.acc):
            m.update(logits, labels, index, split)

    def on_validation_epoch_end(self):
        out = {f"rmia/{k}": v for k, v in self.rmia.compute().items()}
        out["svc"] = self.svc.compute()
        out.update({f"acc/{k}": v for k, v in self.acc.compute().items()})
        self.log_dict({k: v.float() for k, v in out.items()})  # identical on every rank
        # records seen by all ranks together, padding duplicates included
        self.log("n_seen", float(self.n_seen), reduce_fx="sum", sync_dist=True)
        for m in (self.rmia, self.svc, self.acc):
            m.reset()


@pytest.mark.ddp
@pytest.mark.slow
def test_metrics_under_lightning_ddp_spawn_with_distributed_sampler_padding():
    """Lightning injects a padding DistributedSampler into the val loader (300 samples, batch 16,
    2 ranks -> 150 each; a 301st sample makes it pad); the logged metrics equal one process."""
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_unlearn.training import make_trainer

    rec = make_records()
    n = 299  # odd: DistributedSampler pads rank 1 with a duplicate of the first index
    loader = DataLoader(TensorDataset(rec["labels"][:n], rec["index"][:n], rec["split"][:n]), batch_size=16)
    results = {}
    for devices, strategy in ((1, "auto"), (2, "ddp_spawn")):
        trainer = make_trainer(max_epochs=1, accelerator="cpu", devices=devices, strategy=strategy)
        trainer.validate(AuditModule(rec), dataloaders=loader, verbose=False)
        results[devices] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert results[1].keys() == results[2].keys() and len(results[1]) == 10
    assert results[1].pop("n_seen") == n and results[2].pop("n_seen") == n + 1  # the sampler did pad
    for k in results[1]:
        assert results[2][k] == pytest.approx(results[1][k], rel=1e-6, nan_ok=True), k
