"""``METHODS``: the one way in for every unlearning method, by name.

Each method registers itself where it is defined, with the :func:`register_method` decorator
on its class; this module imports no method (so importing it first, or alone, creates no
import cycle). Importing :mod:`lightning_unlearn.unlearning` imports the library's method
modules, so their names are registered before any lookup can run: ``ft, rl, ga, bs, l1,
salun, scrub, amun, amun-salun, adv-only, trw`` (the contract of the main job, in this order), then
``trw-concat`` (TRW with its other stream mixing, so both can be rows of one comparison).
A user's own method registers the same way::

    @register_method
    class MyMethod(UnlearningMethod):
        name = "mine"
        supported = frozenset({("random", True)})

Each class says which settings it supports through ``supports(kind, has_remain)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # for the annotations only: the registry imports no unlearning code
    from lightning_unlearn.unlearning.base import UnlearningMethod

M = TypeVar("M", bound="type[UnlearningMethod]")

#: name -> method class, in registration order (the order of the benchmark's table rows).
METHODS: dict[str, "type[UnlearningMethod]"] = {}


def register_method(cls: M) -> M:
    """Class decorator: register ``cls`` under ``cls.name``.

    Raises:
        ValueError: ``cls.name`` is missing or ``"base"``, or the name already belongs to
            another class.
    """
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name == "base":
        raise ValueError(f"{cls.__name__} needs a class attribute name (the registry and command-line name), got {name!r}")
    known = METHODS.get(name)
    if known is not None and known is not cls:
        raise ValueError(f"method name {name!r} is already registered by {known.__module__}.{known.__qualname__}")
    METHODS[name] = cls
    return cls


def get_method(name: str) -> "type[UnlearningMethod]":
    """The class registered under ``name``; raises ``ValueError`` listing the known names."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown unlearning method {name!r}: expected one of {', '.join(METHODS)}") from None


def methods_for(kind: str, has_remain: bool) -> list[str]:
    """Names of the registered methods that apply to a setting, in registry order."""
    return [n for n, cls in METHODS.items() if cls.supports(kind, has_remain)]


__all__ = ["METHODS", "get_method", "methods_for", "register_method"]
