"""The import graph of lightning_unlearn has no cycle, and every module imports first in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lightning_unlearn"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """Edges module -> imported lightning_unlearn module, from every import statement (top level
    and inside functions; ``from pkg import sub`` points at ``pkg.sub`` when that is a module)."""
    known = set(MODULES)
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        tree = ast.parse(path.read_text())
        skip = _type_checking_lines(tree)
        edges: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in known and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or ``None`` (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "lightning_unlearn.unlearning.registry" in graph and len(graph) == len(MODULES)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_registry_imports_no_method():
    graph = import_graph()
    assert not {m for m in graph["lightning_unlearn.unlearning.registry"] if m.startswith("lightning_unlearn")}
    methods = {"ft", "rl", "ga", "bs", "l1", "salun", "scrub", "amun", "trw"}
    assert all(f"lightning_unlearn.unlearning.{m}" not in graph["lightning_unlearn.unlearning.base"] for m in methods)


# Each module is imported first, alone, in a fresh process: a child forked from a parent that
# holds only the third-party libraries, so no lightning_unlearn module is loaded beforehand.
_FRESH = textwrap.dedent(
    """
    import importlib, os, sys, traceback
    import numpy, sklearn, torch, torchmetrics, lightning  # third-party only
    failed = []
    for name in sys.argv[1:]:
        pid = os.fork()
        if pid == 0:
            try:
                importlib.import_module(name)
                if name == "lightning_unlearn.unlearning.registry":
                    reg = sys.modules[name]
                    assert "amun" in reg.METHODS and reg.get_method("trw").name == "trw", sorted(reg.METHODS)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        if status:
            failed.append(name)
    print("FAILED:", failed)
    sys.exit(1 if failed else 0)
    """
)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_every_module_imports_first_in_a_fresh_interpreter():
    proc = subprocess.run([sys.executable, "-c", _FRESH, *MODULES], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_registry_first_then_a_method_by_name():
    """The registry imported first, in a truly fresh interpreter, still knows every method."""
    code = "from lightning_unlearn.unlearning.registry import get_method, METHODS; print(','.join(METHODS)); print(get_method('amun').__name__)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names, cls = proc.stdout.split()
    assert names == "ft,rl,ga,bs,l1,salun,scrub,amun,amun-salun,adv-only,trw,trw-concat" and cls == "AMUN"
