"""The package surface: every public name resolves, and importing is silent."""

import subprocess
import sys
import types
from pathlib import Path

import pytest

import lightning_unlearn


def test_every_public_name_resolves_to_the_package_object_of_that_name():
    for name in lightning_unlearn.__all__:
        obj = getattr(lightning_unlearn, name)
        if isinstance(obj, (type, types.FunctionType)):
            # a class or function of the package, under its own name or as a documented alias of one
            assert obj.__module__.startswith("lightning_unlearn."), (name, obj.__module__)
            assert obj.__name__ == name or getattr(lightning_unlearn, obj.__name__) is obj, (name, obj.__name__)
    assert lightning_unlearn.FADE is lightning_unlearn.SymmetricKL
    assert {"amun", "trw"} <= set(lightning_unlearn.METHODS)
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert f'\nversion = "{lightning_unlearn.__version__}"\n' in pyproject
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        lightning_unlearn.NotAName  # noqa: B018


def test_fastclip_surface_on_the_package_top():
    from lightning_unlearn.callbacks import ClipRecord, FastClip
    from lightning_unlearn.spectral import ClipSettings

    assert lightning_unlearn.ClipSettings is ClipSettings and lightning_unlearn.ClipRecord is ClipRecord
    assert {"ClipSettings", "ClipRecord", "FastClip"} <= set(lightning_unlearn.__all__)
    assert FastClip(settings=lightning_unlearn.ClipSettings(cert_depth=8)).settings.cert_depth == 8


def test_import_is_silent_and_changes_no_environment():
    code = "import os; before = dict(os.environ); import lightning_unlearn; assert dict(os.environ) == before"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "" and out.stderr == ""


def test_registry_names_are_the_contract():
    from lightning_unlearn.unlearning import METHODS, methods_for

    assert set(METHODS) == {"ft", "rl", "ga", "bs", "l1", "salun", "scrub", "amun", "amun-salun", "adv-only", "trw", "trw-concat"}
    assert set(methods_for("random", True)) == {"ft", "rl", "ga", "bs", "l1", "salun", "scrub", "amun", "amun-salun", "adv-only"}
    assert set(methods_for("random", False)) == {"rl", "ga", "bs", "salun", "amun", "amun-salun", "adv-only"}
    assert set(methods_for("class", True)) == {"ft", "rl", "ga", "bs", "l1", "salun", "scrub", "trw", "trw-concat"}
    assert set(methods_for("class", False)) == {"rl", "ga", "bs", "salun", "trw"}
