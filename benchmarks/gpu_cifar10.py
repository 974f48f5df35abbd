"""Paper-scale random forgetting on one GPU: full CIFAR-10, ResNet-18 with crop+flip, 10% forget set,
AMUN against SalUn, RL and FT, with and without the remain set, beside the AMUN paper's Table 1 and 2.

Claim tested: AMUN (*Not All Wrong is Bad: Using Adversarial Examples for Unlearning*, ICML 2025,
arXiv 2503.00917) is closer to a retrained model than SalUn, RL and FT (Avg. Gap over UA, RA, TA
and the RMIA AUC on D_F vs D_T), with D_R (paper's Table 1) and with D_F only (Table 2), when the
originals fit their training set under crop+flip and generalise (the paper's ResNet-18: train
100%, test 94%). The script is a client of the public API only: ``UnlearningDataModule``,
``train_classifier`` (the library's one training path, here with the training set kept on the
device: ``data_device``; seeds by ``derive_seed``), ``unlearn(module, name, request,
trainer_kwargs=..., **hyperparameters)``, ``membership_matrix``/``reference_pool`` and the
functional metrics.

**Data recipes** (both recorded in the results): the originals (original, retrained, references)
are trained with ``--augmentation`` (default ``auto``: crop+flip on CIFAR-10); every unlearning
phase uses ``--unlearn-augmentation`` (default ``auto``, the reference recipe of the authors' code:
crop+flip on D_R and D_F, none on AMUN's adversarial set D_A), chosen independently.

**Jobs**, taken by ``--workers`` worker processes (default 6) that share the card, or one GPU each
when several are visible (``CUDA_VISIBLE_DEVICES``, round robin). The jobs are units of work in an
optuna storage, ``<out>/jobs.sqlite3``: each worker takes the next job nobody has taken whose
prerequisites are done (:func:`lightning_unlearn.pipeline.store.work_through`, the same claims as
the benchmark's workers), so no job runs twice and a killed worker's job is taken again:

1. train: the original (all 50,000 images, seed 0), the retrained model (D_R, seed 0) and
   ``--refs`` RMIA reference models (each on a random half of the 60,000-image pool, every sample
   IN for exactly half of them; model seeds ``derive_seed(0, "rmia-reference", r)``); ResNet-18,
   crop+flip, one-cycle SGD, bf16 autocast, channels-last, batch 512, the training set on the GPU
   as uint8.
2. after the original: D_A built once on the original (AMUN's minimal-ε PGD-L2 search, ε_init
   0.04), FT (with D_R), RL and SalUn with and without D_R; the methods' default hyperparameters
   (no tuning fits a 15-minute lease), ``--unlearn-epochs`` epochs, batch 128, the unlearning recipe.
3. after D_A: AMUN with and without D_R, both on the D_A of job 2.
4. evaluate (main process, once the workers are done or the budget is spent): UA, RA, TA, SVC
   MIA-efficacy (confidence), RMIA AUC (D_F vs D_T, online, Taylor-softmax signal, γ = 2,
   population: every other pool point), Avg. Gap to the retrained model (with RMIA and with
   MIA-efficacy), the transfer of D_A's labels to the retrained model (mean P_retrain(y_adv |
   x_adv) and top-1 agreement), seconds per job.

**The protocol at the papers' scale** (``--protocol``): the jobs above are sized for one 15-minute
lease, so they run each method at its default hyperparameters on one original. ``--protocol`` runs
instead what every CPU benchmark runs, the fair-comparison protocol (docs/protocol.md: O originals x F
forget sets x R retrained models, every method tuned with the same budget on tuning sets it does not
report, intervals and paired differences): ``benchmarks/random_forget.py --preset cifar10-resnet18``
(``benchmarks/configs/random_forget/cifar10-resnet18.yaml``: 3 x 3 x 3, 21 trials on 2 tuning sets,
ResNet-18 on all of CIFAR-10) with ``--workers`` processes, one GPU each, into ``<out>/protocol``. It
is many GPU-hours, so it is for a node or a cluster, not one lease; every finished unit stays in the
run's storage and the same command resumes (``--tiny --protocol``: the same path on CPU in a minute).

Results are written at the end (``<out>/gpu_cifar10.json`` and ``.md``) with what is finished, so a
run stopped by the lease keeps what it finished, and a rerun continues from the storage.

**How to run on the device machine** (data travels as one packed file, written by ``--write-pack``
from the ImageFolder tree: 54 MiB, in the git-ignored ``.device-data/``; one command may
run 600 s, so the script stops itself after ``--budget`` seconds, writes what it finished, and a
second identical command on the still-warm machine resumes: finished jobs are skipped)::

    python benchmarks/gpu_cifar10.py --write-pack "$LIGHTNING_UNLEARN_DATA/cifar10" --pack .device-data/cifar10.npz   # once, here
    # the device tool: run(carry=[".device-data"], timeout_s=600, command=
    python benchmarks/gpu_cifar10.py --pack .device-data/cifar10.npz --out /tmp/gpu_cifar10 --budget 560; \
        cp /tmp/gpu_cifar10/gpu_cifar10.* /tmp/gpu_cifar10/progress.log "$OUT"/
    # then copy gpu_cifar10.{json,md} into benchmarks/results/ (GPU numbers only; never beside CPU ones)

    # the same code on CPU in about two minutes (tests/test_gpu_benchmark.py runs it):
    python benchmarks/gpu_cifar10.py --tiny --out /tmp/gpu-tiny
    python benchmarks/gpu_cifar10.py --tiny --workers 2 --out /tmp/gpu-tiny-2   # two worker processes

**Expected timings on one H200** (estimates, not yet measured: no GPU was available when this
was written). The repository's H200 measurement of ResNet-18 at batch 128, fp32, five processes
on the card, is 15-22 ms per step (``benchmarks/results/fastclip_training_gpu_resnet18.md``).
Start-up: unpacking and decoding 60,000 JPEGs about 30 s, imports about 10 s per process.
Stage 1: about 3.1 full-training equivalents of 20 epochs at an estimated 3-5 s per epoch
(batch 512, bf16, channels-last; 20 one-cycle epochs should reach the >= 90% test accuracy this
benchmark aims at: one-cycle ResNet-18 runs commonly reach 93-94% in 20-30 epochs): 3-5 min with
the four jobs in parallel. Stage 2: the attack
(5,000 forget samples, attack batch 512; < 3 PGD-50 passes by the paper's bound) about 1 min
beside five unlearning jobs of 5 epochs over at most 50,000 images at batch 128 (about 430 steps
per epoch): 1-3 min. Stage 3: 1-2 min. Evaluation: under 1 min. Total about 7-11 min: one
600-s command (``--budget 560``) probably finishes; otherwise a second identical command resumes
and the lease (15 min) still covers it. ``--epochs`` is the knob if the first stage runs long;
the report states the measured test accuracy of the original.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

# ---------------------------------------------------------------------------- the paper's numbers
# [P] Table 1 (with D_R) and Table 2 (D_F only), CIFAR-10, ResNet-18, 10% random forget, 27 runs:
# UA, RA, TA, RMIA FT AUC, Avg. Gap. Table 2's retrain row is Table 1's.
PAPER = {
    "with_remain": {
        "retrain": (94.49, 100.0, 94.33, 50.00, 0.00),
        "ft": (95.16, 96.64, 92.21, 52.08, 2.06),
        "rl": (95.54, 97.47, 92.17, 51.33, 1.74),
        "salun": (96.25, 98.14, 93.06, 50.88, 1.44),
        "amun": (95.45, 99.57, 93.45, 50.18, 0.62),
    },
    "forget_only": {
        "retrain": (94.49, 100.0, 94.33, 50.00, 0.00),
        "rl": (100.00, 100.00, 94.45, 61.85, 4.31),
        "salun": (100.00, 100.00, 94.47, 61.09, 4.11),
        "amun": (94.28, 97.47, 91.67, 52.24, 1.94),
    },
}
PAPER_COLUMNS = ("ua", "ra", "ta", "rmia_auc", "avg_gap")
SETTINGS = {"with_remain": True, "forget_only": False}
METHODS = {"with_remain": ("ft", "rl", "salun", "amun"), "forget_only": ("rl", "salun", "amun")}


# ---------------------------------------------------------------------------- configuration
@dataclass
class Config:
    """Everything a job needs; written to ``<out>/worker.json`` for the worker processes."""

    pack: str | None = None  # packed CIFAR-10 (.npz of JPEG bytes); unpacked once to <out>/data/cifar10
    data: str | None = None  # or an ImageFolder tree
    out: str = "gpu_cifar10_out"
    tiny: bool = False
    model: str = "resnet18"
    width: int | None = None
    augmentation: str = "auto"  # the originals' recipe (original, retrained, references)
    unlearn_augmentation: str = "auto"  # every unlearning phase's recipe on D_R and D_F (D_A: none)
    max_train: int | None = None
    max_test: int | None = None
    epochs: int = 20
    lr: float = 0.4  # the library's ResNet-18 default, 0.1 at batch 128, scaled linearly to batch 512
    batch_size: int = 512
    unlearn_epochs: int = 5
    unlearn_batch_size: int = 128
    attack_batch_size: int = 512
    refs: int = 2
    forget: str = "random:0.1"
    forget_seed: int = 0
    model_seed: int = 0
    accelerator: str = "auto"
    precision: str = "bf16-mixed"
    channels_last: bool = True
    workers: int = 6
    budget: int = 560
    threads_per_job: int = 2
    cache_dir: str | None = None

    @property
    def data_source(self) -> str:
        if self.data:
            return self.data
        if self.pack:
            return str(Path(self.out) / "data" / "cifar10")
        return "digits"

    @property
    def jobs_dir(self) -> Path:
        return Path(self.out) / "jobs"


def parse_args(argv=None) -> tuple[Config, argparse.Namespace]:
    """The run's :class:`Config` from the command line (``--tiny`` changes the defaults) and the raw arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pack", default=None, help="packed CIFAR-10 (.npz written by --write-pack); default .device-data/cifar10.npz if present")
    p.add_argument("--write-pack", default=None, metavar="TREE",
                   help="pack the CIFAR-10 ImageFolder tree TREE into --pack (default .device-data/cifar10.npz) and exit")
    p.add_argument("--data", default=None, help="a CIFAR-10 ImageFolder tree instead of --pack")
    p.add_argument("--out", default=None, help="working and results folder (default benchmarks/results/gpu_cifar10; --tiny: a temporary folder)")
    p.add_argument("--tiny", action="store_true", help="the same code on CPU in about two minutes (small CNN, a few hundred images)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs of original, retrain and references (default 20)")
    p.add_argument("--lr", type=float, default=None, help="peak one-cycle lr at batch 512 (default 0.4: 0.1 at batch 128, scaled linearly)")
    p.add_argument("--unlearn-epochs", type=int, default=None, help="epochs of each unlearning run (default 5)")
    p.add_argument("--refs", type=int, default=None, help="RMIA reference models, even, >= 2 (default 2)")
    p.add_argument("--augmentation", default=None, choices=("auto", "crop_flip", "none"), help="the originals' augmentation (default auto)")
    p.add_argument("--unlearn-augmentation", default=None, choices=("auto", "crop_flip", "none"),
                   help="the unlearning phase's augmentation of D_R and D_F (default auto: the reference code's crop+flip on CIFAR)")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes taking the jobs (default 6; one GPU each when several are visible; 1: this process, as --tiny)")
    p.add_argument("--budget", type=int, default=None, help="seconds for the whole run, start-up included; later stages wait for a rerun (560)")
    p.add_argument("--accelerator", default=None, help="Lightning accelerator (default auto; --tiny: cpu)")
    p.add_argument("--cache-dir", default=None, help="pool cache (default the library's)")
    p.add_argument("--protocol", action="store_true",
                   help="instead of the lease-sized jobs: the fair-comparison protocol at the papers' scale, benchmarks/random_forget.py "
                   "--preset cifar10-resnet18 (--tiny: the digits preset, tiny) worked on by --workers processes, into OUT/protocol")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: a worker process on the Config in this file
    args = p.parse_args(argv)
    if args.write_pack:  # packing only: main() writes the file and exits
        return Config(), args
    if args.worker:  # a worker process: the whole configuration is in the file
        return Config(**json.loads(Path(args.worker).read_text())), args
    if args.tiny:
        cfg = Config(
            tiny=True, model="small-cnn", width=16, max_train=400, max_test=150, epochs=3, lr=0.05, batch_size=64, unlearn_epochs=1,
            unlearn_batch_size=64, attack_batch_size=128, accelerator="cpu", precision="32-true", channels_last=False, workers=1,
            threads_per_job=1,
        )
    else:
        cfg = Config()
    pack = args.pack
    if pack is None and not args.data and not args.tiny and Path(".device-data/cifar10.npz").is_file():
        pack = ".device-data/cifar10.npz"
    data = args.data
    if args.tiny and not data and not pack:
        tree = os.path.join(os.environ.get("LIGHTNING_UNLEARN_DATA", ""), "cifar10")
        data = tree if os.path.isdir(os.path.join(tree, "train")) else None  # else digits: runs anywhere
    out = args.out or (None if args.tiny else str(Path(__file__).resolve().parent / "results" / "gpu_cifar10"))
    if out is None:
        import tempfile

        out = tempfile.mkdtemp(prefix="gpu-cifar10-tiny-")
    overrides = dict(
        pack=pack, data=data, out=out, epochs=args.epochs, lr=args.lr, unlearn_epochs=args.unlearn_epochs, refs=args.refs,
        workers=args.workers, budget=args.budget, accelerator=args.accelerator, cache_dir=args.cache_dir,
        augmentation=args.augmentation, unlearn_augmentation=args.unlearn_augmentation,
    )
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    if cfg.refs < 2 or cfg.refs % 2:
        raise SystemExit(f"--refs must be an even number >= 2, got {cfg.refs}")
    if not cfg.pack and not cfg.data and not cfg.tiny:
        raise SystemExit("no data: pass --pack .device-data/cifar10.npz (made by --write-pack TREE) or --data <tree>")
    return cfg, args


# ---------------------------------------------------------------------------- data: the packed file
def pack(tree: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Pack an ImageFolder tree (``train/<class>/*``, ``test/<class>/*``) into one file that :func:`unpack` restores.

    60,000 small JPEGs take about 236 MB on disk (per-file overhead) but only about 55 MB of bytes;
    stored as one uncompressed ``.npz`` (JPEG bytes do not compress further) they travel in one
    transfer. Files are stored in sorted order, their bytes unchanged.
    """
    tree, out = Path(tree), Path(out)
    if not (tree / "train").is_dir():
        raise SystemExit(f"--write-pack: {tree} has no train/ folder (expected an ImageFolder tree with train/ and test/)")
    names, blobs = [], []
    for split in ("train", "test"):
        for cls_dir in sorted(p for p in (tree / split).iterdir() if p.is_dir()):
            for f in sorted(cls_dir.iterdir()):
                names.append(f"{split}/{cls_dir.name}/{f.name}")
                blobs.append(f.read_bytes())
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    names_b = np.frombuffer("\n".join(names).encode(), dtype=np.uint8)  # compact, unlike a str array
    np.savez(out, names=names_b, offsets=offsets, data=np.frombuffer(b"".join(blobs), dtype=np.uint8))
    return out


def unpack(pack: str | os.PathLike, tree: str | os.PathLike) -> Path:
    """Write the files of a :func:`pack` file back as an ImageFolder tree (once; a marker file records it).

    The pack is an uncompressed ``.npz`` with ``names`` (the relative paths ``split/class/file``
    joined by newlines, as uint8 bytes), ``offsets`` (``(F + 1,)`` int64) and ``data`` (the
    concatenated file bytes): file i is ``data[offsets[i]:offsets[i + 1]]``. The tree then goes
    through the library's ImageFolder source (decoded once, cached as a uint8 pool).
    """
    tree = Path(tree)
    marker = tree / ".unpacked"
    if marker.is_file() and marker.read_text() == str(Path(pack).resolve()):
        return tree
    z = np.load(pack)
    names = z["names"].tobytes().decode().split("\n")
    offsets, data = z["offsets"], z["data"]
    if len(offsets) != len(names) + 1:
        raise ValueError(f"{pack}: {len(names)} names but {len(offsets)} offsets (expected names + 1)")
    for d in sorted({str(Path(n).parent) for n in names}):
        (tree / d).mkdir(parents=True, exist_ok=True)
    for i, rel in enumerate(names):
        (tree / rel).write_bytes(data[offsets[i] : offsets[i + 1]].tobytes())
    marker.write_text(str(Path(pack).resolve()))
    return tree


def open_data(cfg: Config):
    from lightning_unlearn.data import UnlearningDataModule

    if cfg.pack and not cfg.data:
        unpack(cfg.pack, cfg.data_source)
    dm = UnlearningDataModule(
        cfg.data_source, forget=cfg.forget, seed=cfg.forget_seed, max_train=cfg.max_train, max_test=cfg.max_test,
        batch_size=cfg.batch_size, eval_batch_size=1024, cache_dir=cfg.cache_dir, augmentation=cfg.augmentation,
    )
    dm.setup()
    return dm


# ---------------------------------------------------------------------------- models and training
def device(cfg: Config) -> torch.device:
    gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return torch.device("cuda", 0) if gpu else torch.device("cpu")


def trainer_kwargs(cfg: Config) -> dict[str, Any]:
    return {"accelerator": "gpu" if device(cfg).type == "cuda" else "cpu", "devices": 1, "precision": cfg.precision}


def new_net(cfg: Config, dm) -> torch.nn.Module:
    from lightning_unlearn.models import build_model

    net = build_model(cfg.model, in_channels=dm.image_shape[0], num_classes=dm.num_classes, mean=dm.mean, std=dm.std, width=cfg.width)
    return net.to(memory_format=torch.channels_last) if cfg.channels_last else net


def module_class():
    from lightning_unlearn.training import ClassifierModule
    from lightning_unlearn.unlearning import UnlearningMixin

    class Unlearnable(UnlearningMixin, ClassifierModule):
        """The classifier with the unlearning phase mixed in."""

    return Unlearnable


def fit(cfg: Config, dm, data, *, seed: int) -> torch.nn.Module:
    """:func:`~lightning_unlearn.training.train_classifier` on ``data`` with model seed ``seed`` (seeded init, data
    order ``derive_seed(seed, "data-order")``, one-cycle SGD, the originals' augmentation on the device), the
    training set kept on the GPU when there is one."""
    from lightning_unlearn.training import train_classifier

    dev = device(cfg)
    module = train_classifier(
        dm, on=data, model=cfg.model, width=cfg.width, epochs=cfg.epochs, seed=seed, lr=cfg.lr, batch_size=cfg.batch_size,
        channels_last=cfg.channels_last, data_device=dev if dev.type == "cuda" else None, **trainer_kwargs(cfg),
    )
    return module.model.eval()


def load_net(cfg: Config, dm, name: str) -> torch.nn.Module | None:
    path = cfg.jobs_dir / f"{name}.pt"
    if not path.is_file():
        return None
    net = new_net(cfg, dm)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


# ---------------------------------------------------------------------------- jobs
def job_train(cfg: Config, dm, spec: dict) -> dict:
    from lightning_unlearn.audit import membership_matrix, reference_pool
    from lightning_unlearn.seeding import derive_seed

    role = spec["role"]
    if role == "original":
        data, seed = dm.train_set(), cfg.model_seed
    elif role == "retrain":
        data, seed = dm.remain_set(), cfg.model_seed
    else:  # ref<r>: IN samples of reference r
        r = int(role[3:])
        pool = reference_pool(dm)
        keep = membership_matrix(cfg.refs, len(pool), seed=0)[r]
        data, seed = pool.subset(torch.nonzero(keep).flatten()), derive_seed(cfg.model_seed, "rmia-reference", r)
    net = fit(cfg, dm, data, seed=seed)
    torch.save(net.state_dict(), cfg.jobs_dir / f"{spec['name']}.pt")
    return {"n_train": len(data), "seed": seed}


def job_attack(cfg: Config, dm, spec: dict) -> dict:
    from lightning_unlearn.unlearning import build_adversarial_set

    net = load_net(cfg, dm, "original").to(device(cfg))
    a = build_adversarial_set(net, dm.forget_set(), eps_init=0.04, batch_size=cfg.attack_batch_size, seed=cfg.forget_seed)
    rows = {k: getattr(a, k) for k in ("x", "y", "index", "eps", "delta", "y_true", "clean_pred")}
    torch.save({**rows, "eps_init": a.eps_init}, cfg.jobs_dir / "adversarial.pt")
    eps_hist = {f"{float(e):g}": int(c) for e, c in zip(*torch.unique(a.eps, return_counts=True))}
    return {
        "n_adv": len(a), "n_unresolved": a.n_unresolved, "pgd50_passes": a.cost_in_pgd50_passes, "mean_delta": float(a.delta.mean()),
        "eps_final": eps_hist,
    }


def load_adversarial(cfg: Config):
    from lightning_unlearn.unlearning import AdversarialSet

    d = torch.load(cfg.jobs_dir / "adversarial.pt", weights_only=True)
    return AdversarialSet(d["x"], d["y"], d["index"], d["eps"], d["delta"], d["y_true"], d["clean_pred"], float(d["eps_init"]), n_forget=len(d["y"]))


def job_unlearn(cfg: Config, dm, spec: dict) -> dict:
    from lightning_unlearn.training import seed_everything
    from lightning_unlearn.unlearning import UnlearningRequest, unlearn

    seed_everything(cfg.model_seed)
    module = module_class()(new_net(cfg, dm), num_classes=dm.num_classes, lr=cfg.lr, augmentation=dm.augmentation)
    module.model.load_state_dict(load_net(cfg, dm, "original").state_dict())
    request = UnlearningRequest.from_datamodule(
        dm, use_remain=spec["use_remain"], batch_size=cfg.unlearn_batch_size, augmentation=cfg.unlearn_augmentation
    )
    hparams: dict[str, Any] = {"epochs": cfg.unlearn_epochs}
    if spec["method"] == "amun":
        hparams.update(adversarial_set=load_adversarial(cfg), attack_batch_size=cfg.attack_batch_size)
    unlearn(module, spec["method"], request, trainer_kwargs=trainer_kwargs(cfg), **hparams)
    torch.save(module.model.state_dict(), cfg.jobs_dir / f"{spec['name']}.pt")
    return {
        "method": spec["method"], "use_remain": spec["use_remain"], "augmentation": request.augmentation or "none",
        "hparams": {k: v for k, v in hparams.items() if k != "adversarial_set"},
    }


JOBS = {"train": job_train, "attack": job_attack, "unlearn": job_unlearn}


def run_job(cfg: Config, spec: dict) -> dict:
    """Run one job in this process and write ``<name>.json`` (seconds and the job's facts); returns them."""
    torch.set_num_threads(cfg.threads_per_job)
    torch.backends.cudnn.benchmark = True
    if torch.cuda.is_available():
        torch.set_float32_matmul_precision("high")
    dm = open_data(cfg)
    start = time.perf_counter()
    facts = JOBS[spec["kind"]](cfg, dm, spec)
    meta = {"name": spec["name"], "seconds": time.perf_counter() - start, **facts}
    (cfg.jobs_dir / f"{spec['name']}.json").write_text(json.dumps(meta, indent=1, default=str))
    return meta


def job_specs(cfg: Config) -> list[dict]:
    """Every job, in the order workers take them, each with the jobs it needs first (``after``)."""
    train = [{"kind": "train", "name": n, "role": n} for n in ("original", "retrain", *[f"ref{r}" for r in range(cfg.refs)])]
    unlearn = [{**unlearn_job(m, s), "after": ["original"]} for s in SETTINGS for m in METHODS[s] if m != "amun"]
    amun = [{**unlearn_job("amun", s), "after": ["original", "attack"]} for s in SETTINGS]
    return [*train, {"kind": "attack", "name": "attack", "after": ["original"]}, *unlearn, *amun]


def job_store(cfg: Config):
    """The optuna storage of the jobs, ``<out>/jobs.sqlite3`` (:class:`lightning_unlearn.pipeline.store.RunStore`), with
    the run declared (created before any worker starts: concurrent first writers of an SQLite file would race)."""
    from lightning_unlearn.pipeline.store import RunStore

    store = RunStore(f"sqlite:///{(Path(cfg.out) / 'jobs.sqlite3').absolute()}")
    store.start({"run": {k: v for k, v in asdict(cfg).items() if k not in RUN_KEYS_IGNORED}})
    store.study  # noqa: B018 - creates the storage and its study
    return store


def job_tasks(cfg: Config) -> list:
    """The jobs as :class:`lightning_unlearn.pipeline.store.Task` (key ``{"job": name}``, prerequisites as ``after``)."""
    from lightning_unlearn.pipeline.store import Task, unit_key

    return [Task(unit_key(job=j["name"]), lambda j=j: run_job(cfg, j), {"job": j["name"]}, tuple(unit_key(job=a) for a in j.get("after", [])))
            for j in job_specs(cfg)]


def unfinished(cfg: Config) -> list[str]:
    """The jobs without an outcome in the storage."""
    done = job_store(cfg).outcomes()
    return [t.unit["job"] for t in job_tasks(cfg) if t.key not in done]


def work(cfg: Config, log, deadline: float | None = None) -> list[str]:
    """One worker: take the jobs nobody has taken whose prerequisites are done, until none is left (or
    ``deadline``, a ``time.monotonic()`` value); returns the jobs left unfinished. A job that fails is
    logged and left for a rerun (another worker may try it)."""
    from lightning_unlearn.pipeline.store import work_through

    store = job_store(cfg)
    try:
        left = work_through(store, job_tasks(cfg), on_done=lambda task, out: log(f"  {task.unit['job']}: done ({out.record['seconds']:.0f} s)"),
                            deadline=deadline, keep_going=True)
    finally:
        store.close()
    return [json.loads(k)["job"] for k in left]


def run_workers(cfg: Config, log, deadline: float) -> None:
    """``cfg.workers`` worker processes (this script with ``--worker``), one GPU each when several are visible; those still
    running at ``deadline`` are stopped (their jobs fail and are taken again by a rerun)."""
    from lightning_unlearn.pipeline.workers import wait_workers, worker_environments

    spec = Path(cfg.out) / "worker.json"
    spec.write_text(json.dumps(asdict(cfg)))
    root = str(Path(__file__).resolve().parents[1])  # the repository: the workers import its lightning_unlearn
    procs = []
    for i, extra in enumerate(worker_environments(cfg.workers, cfg.accelerator, threads=cfg.threads_per_job)):
        env = {**os.environ, **extra, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(spec)]
        with open(cfg.jobs_dir / f"worker-{i}.log", "w") as out:
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env))
        log(f"worker {i}: pid {procs[-1].pid}" + (f", GPU {extra['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in extra else ""))
    codes = wait_workers(procs, deadline=deadline)
    log(f"workers done: exit codes {codes}")


# ---------------------------------------------------------------------------- evaluation
def evaluate(cfg: Config, dm) -> dict:
    from lightning_unlearn.audit import adversarial_transfer, reference_pool
    from lightning_unlearn.inference import accuracy, predict_logits
    from lightning_unlearn.metrics import functional as F

    pool = reference_pool(dm)  # train pool then test pool
    n_train = len(dm.pool.train_index)
    y = pool.y
    forget = torch.nonzero(torch.isin(pool.index, dm.pool.train_index[dm.split.forget])).flatten()
    remain = torch.nonzero(torch.isin(pool.index, dm.pool.train_index[dm.split.remain])).flatten()
    test = torch.arange(n_train, len(pool))
    dev = device(cfg)

    def logits(net):
        return predict_logits(net.to(dev), pool, batch_size=1024)[0]

    refs = [load_net(cfg, dm, f"ref{r}") for r in range(cfg.refs)]
    ref_signals = torch.stack([F.taylor_softmax_signal(logits(n), y) for n in refs]) if all(n is not None for n in refs) else None
    members = remain[F.select_shadow_members(pool.index[remain], len(test), seed=0)]

    def figures(net) -> dict:
        z = logits(net)
        probs = torch.softmax(z.double(), 1)
        v = {"ua": accuracy(z[forget], y[forget]), "ra": accuracy(z[remain], y[remain]), "ta": accuracy(z[test], y[test])}
        v["mia"] = float(F.mia_efficacy(probs[members], y[members], probs[test], y[test], probs[forget], y[forget], feature="confidence"))
        if ref_signals is not None:
            target = F.taylor_softmax_signal(z, y)
            query = torch.cat([forget, test])
            scores = F.rmia_scores(target[query], ref_signals[:, query], target, ref_signals, gamma=2.0, self_index=query)
            labels = torch.cat([torch.ones(len(forget)), torch.zeros(len(test))]).long()
            v["rmia_auc"] = F.roc_auc(scores, labels)
        return v

    out: dict[str, Any] = {"models": {}, "jobs": {}}
    for meta in sorted(cfg.jobs_dir.glob("*.json")):
        if not meta.name.endswith(".spec.json"):
            out["jobs"][meta.stem] = json.loads(meta.read_text())
    for name in ["original", "retrain", *[f"{m}_{s}" for s in SETTINGS for m in METHODS[s]]]:
        net = load_net(cfg, dm, name)
        if net is not None:
            out["models"][name] = figures(net)
    star = out["models"].get("retrain")
    if star is not None:
        for v in out["models"].values():
            if "rmia_auc" in v:
                v["avg_gap"] = F.avg_gap(v, star, keys=("ua", "ra", "ta", "rmia_auc"))
            v["avg_gap_mis"] = F.avg_gap(v, star, keys=("ua", "ra", "ta", "mia"))
    retrain = load_net(cfg, dm, "retrain")
    if retrain is not None and (cfg.jobs_dir / "adversarial.pt").is_file():
        out["transfer_to_retrain"] = adversarial_transfer(retrain.to(dev), load_adversarial(cfg))
        out["transfer_to_retrain_perturbed_only"] = adversarial_transfer(retrain.to(dev), load_adversarial(cfg), perturbed_only=True)
    return out


# ---------------------------------------------------------------------------- report
def markdown(summary: dict) -> str:
    f = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    models, jobs = summary["models"], summary["jobs"]
    lines = [
        f"# Paper-scale random forgetting — {summary['device']}",
        "",
        f"torch {summary['torch']}; command: `{summary['command']}`; wall {summary['wall_seconds']:.0f} s"
        + (" (**--tiny: a CPU smoke run, not a result**)" if summary["tiny"] else "") + ".",
        f"Data: {summary['data']}; model {summary['config']['model']}, {summary['config']['epochs']} epochs, batch "
        f"{summary['config']['batch_size']}, lr {summary['config']['lr']}, {summary['config']['precision']}; "
        f"unlearning: {summary['config']['unlearn_epochs']} epochs, batch {summary['config']['unlearn_batch_size']}, default hyperparameters; "
        f"{summary['config']['refs']} RMIA references.",
        "",
    ]
    rec = summary.get("recipes")
    if rec:
        o, u = rec["original"], rec["unlearning"]
        lines += [
            f"Data recipes: originals (original, retrained, references) {o['augmentation']} (`--augmentation {o['setting']}`); "
            f"unlearning phase (every method) {u['augmentation']} on D_R and D_F (`--unlearn-augmentation {u['setting']}`), "
            f"{u['adversarial_set']} on AMUN's D_A, batch {u['batch_size']}.",
            "",
        ]
    if "original" in models:
        o = models["original"]
        lines.append(f"Original: train (D_R) {o['ra']:.2f}%, forget {o['ua']:.2f}%, test {o['ta']:.2f}% (target >= 90).")
    t = summary.get("transfer_to_retrain")
    if t:
        a = jobs.get("attack", {})
        lines.append(
            f"D_A: {a.get('n_adv')} examples, {a.get('pgd50_passes', float('nan')):.2f} PGD-50 passes, "
            f"mean ‖δ‖ {a.get('mean_delta', float('nan')):.3f}; "
            f"transfer to the retrained model: mean P(y_adv|x_adv) {t['prob']:.2f}%, top-1 {t['top1']:.2f}%."
        )
    for setting, title in (("with_remain", "With D_R (paper Table 1)"), ("forget_only", "D_F only (paper Table 2)")):
        lines += [
            "",
            f"## {title}",
            "",
            "| method | UA | RA | TA | MIA (SVC) | RMIA AUC | Avg. Gap | Gap (MIS) | s | paper UA | paper RA | paper TA | paper RMIA | paper Gap |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for m in ("retrain", *METHODS[setting]):
            key = m if m == "retrain" else f"{m}_{setting}"
            v = models.get(key, {})
            p = dict(zip(PAPER_COLUMNS, PAPER[setting].get(m, (None,) * 5)))
            secs = jobs.get(key, {}).get("seconds")
            lines.append(
                f"| {m} | {f(v.get('ua'))} | {f(v.get('ra'))} | {f(v.get('ta'))} | {f(v.get('mia'))} | {f(v.get('rmia_auc'))} | "
                f"{f(v.get('avg_gap'))} | {f(v.get('avg_gap_mis'))} | {f(secs)} | {f(p['ua'])} | {f(p['ra'])} | {f(p['ta'])} | "
                f"{f(p['rmia_auc'])} | {f(p['avg_gap'])} |"
            )
    lines += [
        "",
        "Paper: [P] Tables 1 and 2, 200-epoch ResNet-18 originals, 27 runs, tuned hyperparameters, 128 RMIA references.",
        "This run: one original, one forget set, one retrained model, the methods' default hyperparameters, "
        f"{summary['config']['refs']} references (RMIA with few references is weaker: compare gaps, not AUCs).",
        "",
        "Seconds per job: " + ", ".join(f"{k} {v.get('seconds', float('nan')):.0f}" for k, v in sorted(jobs.items())) + ".",
    ]
    return "\n".join(lines) + "\n"


def recipes(cfg: Config, dm) -> dict:
    """Both data recipes, resolved for the data's image shape (``"crop_flip"`` or ``"none"``)."""
    from lightning_unlearn.data.transforms import resolve_augmentation

    return {
        "original": {
            "augmentation": resolve_augmentation(cfg.augmentation, dm.image_shape) or "none", "setting": cfg.augmentation,
            "batch_size": cfg.batch_size, "epochs": cfg.epochs, "lr": cfg.lr, "model": cfg.model, "width": cfg.width,
        },
        "unlearning": {
            "augmentation": resolve_augmentation(cfg.unlearn_augmentation, dm.image_shape) or "none", "setting": cfg.unlearn_augmentation,
            "applies_to": "remain and forget sets (D_R, D_F)", "adversarial_set": "none", "batch_size": cfg.unlearn_batch_size,
            "epochs": cfg.unlearn_epochs,
        },
    }


def write_summary(cfg: Config, dm, start: float, argv) -> dict:
    from lightning_unlearn.environment import device_name

    summary = {
        "device": device_name(cfg.accelerator if cfg.accelerator != "auto" else "auto"),
        "torch": torch.__version__,
        "command": "python " + " ".join([os.path.relpath(__file__)] + list(sys.argv[1:] if argv is None else argv)),
        "tiny": cfg.tiny,
        "data": f"{cfg.data_source} ({len(dm.pool.train_index)} train / {len(dm.pool.test_index)} test)",
        "config": asdict(cfg),
        "recipes": recipes(cfg, dm),
        "wall_seconds": time.perf_counter() - start,
        **evaluate(cfg, dm),
        "paper": {s: {m: dict(zip(PAPER_COLUMNS, v)) for m, v in t.items()} for s, t in PAPER.items()},
    }
    out = Path(cfg.out)
    (out / "gpu_cifar10.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "gpu_cifar10.md").write_text(markdown(summary))
    return summary


def unlearn_job(method: str, setting: str) -> dict:
    return {"kind": "unlearn", "name": f"{method}_{setting}", "method": method, "use_remain": SETTINGS[setting]}


RUN_KEYS_IGNORED = ("workers", "budget", "out", "cache_dir", "threads_per_job")


#: ``--protocol --tiny``: the digits preset cut to a CPU minute (one original, one forget set, one trial per method)
TINY_PROTOCOL = ("--preset", "digits", "--max-train", "200", "--max-test", "100", "--epochs", "2", "--unlearn-epochs", "1", "--max-trials", "1",
                 "--seeds", "0", "--forget-seeds", "0", "--retrain-models", "2", "--tune-sets", "2", "--rmia-references", "2",
                 "--methods", "ft,rl,amun", "--settings", "remain")


def protocol_argv(cfg: Config) -> list[str]:
    """The ``benchmarks/random_forget.py`` command line of ``--protocol``: the ``cifar10-resnet18`` preset on this run's
    data (``--tiny``: :data:`TINY_PROTOCOL`), its runs under ``OUT/protocol``, ``cfg.workers`` worker processes."""
    argv = list(TINY_PROTOCOL) if cfg.tiny else ["--preset", "cifar10-resnet18", "--data", cfg.data_source]
    argv += ["--out", str(Path(cfg.out) / "protocol"), "--workers", str(max(1, cfg.workers))]
    if cfg.tiny:
        argv += ["--accelerator", "cpu"]
    if cfg.cache_dir:
        argv += ["--cache-dir", cfg.cache_dir]
    return argv


def run_protocol(cfg: Config, log) -> list[str]:
    """``--protocol``: the fair-comparison protocol (docs/protocol.md) at the papers' scale, by
    ``benchmarks/random_forget.py``: 3 originals x 3 forget sets x 3 retrained models, every method tuned with 21
    trials on 2 tuning sets, with and without D_R, the AMUN paper's numbers beside. Its units are kept in
    ``OUT/protocol/<run>/study.sqlite3``: a run stopped by the lease resumes with the same command (and more
    machines may join with ``lightning-unlearn worker``). Returns the command line it ran."""
    import importlib.util

    if cfg.pack and not cfg.data and not cfg.tiny:
        unpack(cfg.pack, cfg.data_source)
    argv = protocol_argv(cfg)
    log(f"protocol: benchmarks/random_forget.py {' '.join(argv)}")
    spec = importlib.util.spec_from_file_location("random_forget", Path(__file__).resolve().parent / "random_forget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(argv)
    return argv


def check_same_run(cfg: Config) -> None:
    """A rerun into the same ``--out`` resumes only the same experiment: its job results would otherwise mix."""
    path = Path(cfg.out) / "config.json"
    mine = {k: v for k, v in asdict(cfg).items() if k not in RUN_KEYS_IGNORED}
    if path.is_file():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(mine) if old.get(k) != mine.get(k))
        if diff:
            raise SystemExit(f"{cfg.out} holds a run with other settings ({', '.join(diff)}): pass a fresh --out")
    path.write_text(json.dumps(mine, indent=1))


def main(argv=None) -> dict:
    cfg, args = parse_args(argv)
    if args.write_pack:
        written = pack(args.write_pack, args.pack or ".device-data/cifar10.npz")
        print(f"packed {args.write_pack} -> {written} ({written.stat().st_size / 2**20:.1f} MiB)")
        return {}
    start = time.perf_counter()
    progress = Path(cfg.out) / "progress.log"
    who = f"worker {os.getpid()}: " if args.worker else ""

    def log(msg: str) -> None:
        line = f"[{time.perf_counter() - start:7.1f} s] {who}{msg}"
        print(line, flush=True)
        with progress.open("a") as fh:
            fh.write(line + "\n")

    if args.protocol:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        return {"protocol": run_protocol(cfg, log)}
    if args.worker:  # a worker process: take jobs until none is left (SIGTERM at the deadline fails its job, kept for a rerun)
        from lightning_unlearn.pipeline.interrupt import handle_signals

        with handle_signals():
            work(cfg, log, deadline=None)
        return {}
    cfg.jobs_dir.mkdir(parents=True, exist_ok=True)
    check_same_run(cfg)
    dm = open_data(cfg)  # unpack + decode once, so the workers load the cached pool
    log(f"data ready: {cfg.data_source}, {len(dm.pool.train_index)} train / {len(dm.pool.test_index)} test images")
    deadline = time.monotonic() + cfg.budget - (time.perf_counter() - start) - 30  # 30 s kept for the evaluation
    if cfg.workers <= 1:
        left = work(cfg, log, deadline)
    else:
        job_store(cfg)  # the storage exists before the workers start
        run_workers(cfg, log, deadline)
        left = unfinished(cfg)
    if left:
        log(f"not finished: {', '.join(left)} (the budget of {cfg.budget} s is spent or a job failed: see {progress}; rerun the same command to resume)")
    summary = write_summary(cfg, dm, start, argv)
    log(f"written to {cfg.out}/gpu_cifar10.md")
    print(markdown(summary))
    return summary


if __name__ == "__main__":
    main()
