"""The layer contract: which part of lightning_unlearn may import which.

A *part* is a subpackage or top-level module of ``lightning_unlearn`` (``metrics.functional`` is a
part of its own, below the metric classes). :data:`MAY_IMPORT` lists, for each part, the parts it
may import directly; a part may also import, transitively, whatever those may import, and always
itself. Nothing may import a part that is not reachable this way: that would be an upward import.

Leaves import no part of the library: ``seeding``, ``fileio``, ``environment``, ``strategies``,
``spectral``, ``models``, ``stats``, ``search_space`` (the typed tuning axes the method classes
declare). ``metrics`` is a leaf apart from the pure helpers ``seeding``
and ``stats``: it imports torch, torchmetrics, numpy and scikit-learn, never data, models,
training, unlearning or the pipeline; the model-running side of the audits is ``audit``.

Two checks: every import statement (top level and inside functions, not ``if TYPE_CHECKING:``),
parsed with ``ast``; and, in a fresh interpreter per part, the parts that importing it loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_imports import MODULES, ROOT, import_graph

PACKAGE = "lightning_unlearn"

#: part -> the parts it may import directly (see the module docstring). Parts not created yet may
#: be listed; every existing part must be.
MAY_IMPORT: dict[str, frozenset[str]] = {
    # leaves: third-party libraries only
    "seeding": frozenset(),
    "fileio": frozenset(),
    "environment": frozenset(),
    "strategies": frozenset(),
    "spectral": frozenset(),
    "models": frozenset(),
    "stats": frozenset(),
    "search_space": frozenset(),
    "cache_lock": frozenset({"fileio"}),
    # the audit metrics: plain tensor functions, then the torchmetrics classes over them
    "metrics.functional": frozenset({"seeding", "stats"}),
    "metrics": frozenset({"metrics.functional"}),
    # storage, data, Lipschitz control
    "cache": frozenset({"cache_lock", "fileio"}),
    "callbacks": frozenset({"spectral", "strategies"}),
    "data": frozenset({"cache", "seeding"}),
    "inference": frozenset({"data", "metrics", "models"}),
    "attacks": frozenset({"data", "models"}),
    # training and unlearning
    "training": frozenset({"callbacks", "data", "environment", "models"}),
    "unlearning": frozenset({"attacks", "inference", "metrics", "search_space", "training"}),
    # models trained or run for an audit (references, U-LiRA shadows), tuning, the benchmark
    "audit": frozenset({"metrics", "unlearning"}),
    "tuning": frozenset({"audit"}),
    "pipeline": frozenset({"audit", "tuning"}),
    "cli": frozenset({"pipeline"}),
}


def part_of(module: str, table: dict[str, frozenset[str]] = MAY_IMPORT) -> str | None:
    """The part of a ``lightning_unlearn`` module: the longest table key it lies in, else its first
    component (an undeclared part); ``None`` for the package root."""
    rest = module.split(".")[1:]
    if not rest:
        return None
    for n in range(len(rest), 0, -1):
        if ".".join(rest[:n]) in table:
            return ".".join(rest[:n])
    return rest[0]


def reachable(part: str, table: dict[str, frozenset[str]] = MAY_IMPORT) -> set[str]:
    """The parts ``part`` may import: its row, transitively (not itself unless a cycle leads back)."""
    seen: set[str] = set()
    todo = list(table.get(part, ()))
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(table.get(p, ()))
    return seen


def layer_violations(graph: dict[str, set[str]], table: dict[str, frozenset[str]] = MAY_IMPORT) -> list[str]:
    """``"a.b -> c.d"`` for every module edge from one part to a part it may not import, and every undeclared part."""
    out = []
    for module, targets in sorted(graph.items()):
        src = part_of(module, table)
        if src is None:
            out += [f"{module} -> {t} (the package root imports lazily only)" for t in sorted(targets)]
            continue
        if src not in table:
            out.append(f"{module}: part {src!r} is not declared in MAY_IMPORT")
            continue
        allowed = reachable(src, table) | {src, None}  # None: the root, which imports nothing when imported
        out += [f"{module} -> {t}" for t in sorted(targets) if part_of(t, table) not in allowed]
    return out


def test_the_table_is_a_layering():
    """No part can reach itself, and every named part is declared."""
    for part, row in MAY_IMPORT.items():
        assert row <= MAY_IMPORT.keys(), f"{part} names undeclared parts {sorted(row - MAY_IMPORT.keys())}"
        assert part not in reachable(part), f"{part} can reach itself: the table has a cycle"
    assert reachable("metrics") == {"metrics.functional", "seeding", "stats"}
    assert not {"data", "models", "training", "unlearning", "audit", "pipeline"} & reachable("metrics")
    assert "metrics" not in reachable("metrics.functional")


def test_the_checker_finds_planted_upward_imports():
    graph = {
        "lightning_unlearn.metrics.rmia": {"lightning_unlearn.training.fit", "lightning_unlearn.metrics.functional.roc"},
        "lightning_unlearn.metrics.functional.roc": {"lightning_unlearn.metrics.rmia"},
        "lightning_unlearn.data.pool": {"lightning_unlearn.cache", "lightning_unlearn"},
        "lightning_unlearn.newpart": set(),
        "lightning_unlearn": {"lightning_unlearn.metrics"},
    }
    assert layer_violations(graph) == [
        "lightning_unlearn -> lightning_unlearn.metrics (the package root imports lazily only)",
        "lightning_unlearn.metrics.functional.roc -> lightning_unlearn.metrics.rmia",
        "lightning_unlearn.metrics.rmia -> lightning_unlearn.training.fit",
        "lightning_unlearn.newpart: part 'newpart' is not declared in MAY_IMPORT",
    ]


def test_no_import_statement_goes_upward():
    graph = import_graph()
    assert len(graph) == len(MODULES)
    violations = layer_violations(graph)
    assert not violations, "imports against the layer contract (tests/test_layers.py):\n" + "\n".join(violations)


def existing_parts() -> list[str]:
    return sorted({p for p in (part_of(m) for m in MODULES) if p is not None})


# Each part is imported first, alone, in a child forked from a parent that holds only the
# third-party libraries; the child reports which parts are then loaded.
_LOADED = textwrap.dedent(
    """
    import importlib, json, os, sys
    import numpy, sklearn, torch, torchmetrics, lightning  # third-party only
    out = {}
    for part in sys.argv[1:]:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            importlib.import_module("lightning_unlearn." + part)
            loaded = sorted(m for m in sys.modules if m.startswith("lightning_unlearn."))
            os.write(w, json.dumps(loaded).encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            out[part] = json.loads(f.read() or "null")
        os.waitpid(pid, 0)
    print(json.dumps(out))
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_importing_a_part_loads_only_what_it_may_import():
    parts = existing_parts()
    assert {"metrics", "metrics.functional", "audit", "training", "pipeline"} <= set(parts)
    proc = subprocess.run([sys.executable, "-c", _LOADED, *parts], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    bad = {}
    for part in parts:
        assert loaded[part] is not None, f"importing lightning_unlearn.{part} failed"
        # importing a.b runs a/__init__.py first: a sub-part may load what its parent part may
        parents = {".".join(part.split(".")[:n]) for n in range(1, part.count(".") + 1)} & MAY_IMPORT.keys()
        allowed = {part, *parents}.union(*(reachable(p) for p in {part, *parents}))
        extra = sorted(m for m in loaded[part] if part_of(m) not in allowed)
        if extra:
            bad[part] = extra
    assert not bad, f"importing these parts loads parts they may not import: {bad}"
    assert not any(part_of(m) in ("data", "training", "pipeline", "models") for m in loaded["metrics"]), loaded["metrics"]
