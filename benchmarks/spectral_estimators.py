"""Spectral-norm estimators on zero-padded 3x3 convolutions: error against the truth, and time per estimate.

Compared (comparators implemented here from their published formulas):
- ``library``: ``lightning_unlearn.spectral.singular_values(conv, (C, n, n))`` (cold start, restarted
  block Krylov to residual 1e-4): the true operator at the true input size.
- ``library-track``: one warm tracking step (k = 4 probes; the per-step cost of FastClip's tracking).
- ``reshaped``: what ``torch.nn.utils.parametrizations.spectral_norm`` converges to, the largest
  singular value of the kernel reshaped to ``(C_out, C_in * 3 * 3)`` (timed as 20 power iterations).
- ``sedghi``: Sedghi et al. (ICLR 2019): FFT of the kernel zero-padded to n x n, largest singular
  value over the n^2 matrices ``C_out x C_in`` (exact for circular padding, stride 1).
- ``gram6``: Gram iteration (Delattre et al., ICML 2023) with 6 iterations on the same FFT
  matrices, a bound for circular convolutions.
Truth: SVD of the dense Jacobian when ``C n^2 <= 2048``, else ARPACK (``scipy.sparse.linalg.eigsh``,
float64) on ``M^T M`` through the raw conv and its autograd adjoint: no code shared with the library.

Run (about 3 minutes on 2 shared cores)::

    OMP_NUM_THREADS=1 nice -n 10 env PYTHONPATH=. python benchmarks/spectral_estimators.py

Writes ``benchmarks/results/spectral_estimators.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from lightning_unlearn.environment import device_name  # noqa: E402
from lightning_unlearn.spectral import Operator, linear_map, singular_values  # noqa: E402
from lightning_unlearn.spectral.estimators import tracking_step  # noqa: E402

SHAPES = [(16, 8), (16, 32), (64, 4), (64, 16), (64, 32), (128, 8), (256, 8), (512, 4)]


# ----------------------------------------------------------------------------- comparators
def reshaped_norm(w: torch.Tensor, iters: int = 20) -> torch.Tensor:
    """Power iteration on W reshaped to (C_out, C_in k k), as torch's spectral_norm does (one iteration per forward)."""
    m = w.reshape(w.shape[0], -1)
    u = torch.nn.functional.normalize(torch.randn(m.shape[0], generator=torch.Generator().manual_seed(0)), dim=0)
    for _ in range(iters):
        v = torch.nn.functional.normalize(m.T @ u, dim=0)
        u = torch.nn.functional.normalize(m @ v, dim=0)
    return u @ m @ v


def fft_matrices(w: torch.Tensor, n: int) -> torch.Tensor:
    """Sedghi et al.: the n^2 matrices ``(C_out, C_in)`` of the kernel's 2-D DFT at size n x n."""
    return torch.fft.fft2(w, s=(n, n)).permute(2, 3, 0, 1).reshape(n * n, w.shape[0], w.shape[1])


def sedghi_norm(w: torch.Tensor, n: int) -> torch.Tensor:
    return torch.linalg.matrix_norm(fft_matrices(w, n), ord=2).max()


def gram_bound(w: torch.Tensor, n: int, iters: int = 6) -> torch.Tensor:
    """Gram iteration bound ``max_f ||G_t(D_f)||_F^(1/2^t)`` with rescaling (Delattre et al. 2023)."""
    d = fft_matrices(w, n)
    log_s = torch.zeros(d.shape[0], dtype=torch.float64)
    for _ in range(iters):
        nrm = torch.linalg.matrix_norm(d, ord="fro")
        d = d / nrm[:, None, None]
        log_s = 2 * (log_s + torch.log(nrm.double()))
        d = d.mH @ d
    return torch.exp((log_s + torch.log(torch.linalg.matrix_norm(d, ord="fro").double())) / 2**iters).max()


# ----------------------------------------------------------------------------- truth
def truth(conv: nn.Conv2d, shape: tuple[int, ...]) -> tuple[float, str]:
    n_in = shape[0] * shape[1] * shape[2]
    if n_in <= 2048:
        m = conv.double()
        with torch.no_grad():
            jac = m._conv_forward(torch.eye(n_in, dtype=torch.float64).reshape(n_in, *shape), m.weight, None).reshape(n_in, -1)
        conv.float()
        return float(torch.linalg.svdvals(jac)[0]), "dense SVD"
    # Too large for the dense Jacobian: ARPACK (scipy's eigsh, implicitly restarted Lanczos) on
    # A = M^T M in float64, with products from the raw conv and its autograd adjoint, so the
    # reference shares no code with the library's estimators.
    from scipy.sparse.linalg import LinearOperator, eigsh

    w = conv.weight.detach().double()

    def gram(x):
        xt = torch.from_numpy(x).reshape(1, *shape).requires_grad_(True)
        with torch.enable_grad():
            y = F.conv2d(xt, w, None, conv.stride, conv.padding, conv.dilation, conv.groups)
            (g,) = torch.autograd.grad(y, xt, grad_outputs=y.detach())
        return g.reshape(-1).numpy()

    lam = eigsh(LinearOperator((n_in, n_in), matvec=gram, dtype="float64"), k=1, which="LA", tol=1e-10, return_eigenvectors=False)
    return float(lam[0]) ** 0.5, "ARPACK eigsh float64"


def timed(fn, repeats: int) -> tuple[float, float]:
    ts, val = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        val = fn()
        ts.append(time.perf_counter() - t)
    return float(val), statistics.median(ts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/spectral_estimators")
    args = p.parse_args()
    rows = []
    for c, n in SHAPES:
        for stride in (1, 2):
            torch.manual_seed(c * 1000 + n + stride)
            conv = nn.Conv2d(c, c, 3, stride=stride, padding=1, bias=False)
            shape = (c, n, n)
            t_val, t_kind = truth(conv, shape)
            w = conv.weight.detach()
            op = Operator(linear_map(conv), shape)
            v = op.random_block(4, torch.Generator().manual_seed(1))
            with torch.no_grad():
                ests = {
                    "library": timed(lambda conv=conv, shape=shape: singular_values(conv, shape, k=1), args.repeats),
                    "library-track": timed(lambda op=op, v=v: tracking_step(op, v).sigma[0], args.repeats),
                    "reshaped": timed(lambda w=w: reshaped_norm(w), args.repeats),
                    "sedghi": timed(lambda w=w, n=n: sedghi_norm(w, n), args.repeats),
                    "gram6": timed(lambda w=w, n=n: gram_bound(w, n), args.repeats),
                }
            row = {"C": c, "n": n, "stride": stride, "truth": t_val, "truth_kind": t_kind,
                   "estimates": {k: {"value": val, "rel_err": (val - t_val) / t_val, "ms": 1e3 * dt} for k, (val, dt) in ests.items()}}
            row["estimates"]["library-track"]["rel_err"] = None  # one cold step is not an estimate of the converged value
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {
        "hardware": device_name("cpu"),
        "torch": torch.__version__,
        "command": "python " + " ".join(sys.argv),
        "timing": f"median of {args.repeats} calls, float32",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    names = ["library", "reshaped", "sedghi", "gram6"]
    lines = ["# Spectral-norm estimators on zero-padded 3x3 convs", "", *(f"- {k}: {v}" for k, v in meta.items()), "",
             "Relative error (estimate - truth) / truth; time per estimate in ms. sedghi and gram6 are exact/bounds for "
             "circular padding and stride 1 only; reshaped is torch spectral_norm's converged value.", "",
             "| C | n | stride | truth | " + " | ".join(f"{k} err" for k in names) + " | "
             + " | ".join(f"{k} ms" for k in names) + " | track step ms | truth from |",
             "|---" * (5 + 2 * len(names) + 1) + "|"]
    for r in rows:
        e = r["estimates"]
        lines.append(f"| {r['C']} | {r['n']} | {r['stride']} | {r['truth']:.4f} | " + " | ".join(f"{e[k]['rel_err']:+.2e}" for k in names)
                     + " | " + " | ".join(f"{e[k]['ms']:.1f}" for k in names) + f" | {e['library-track']['ms']:.1f} | {r['truth_kind']} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
