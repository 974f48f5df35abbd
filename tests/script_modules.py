"""Import a script of ``benchmarks/`` or ``examples/`` as a module (those folders are not packages)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str | Path, name: str | None = None) -> ModuleType:
    """Execute ``path`` (relative to the repository root, or absolute) as module ``name`` (default: its stem).

    The module is registered in ``sys.modules`` first: dataclasses defined in it look their
    module up there.
    """
    path = ROOT / path
    name = name or path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
