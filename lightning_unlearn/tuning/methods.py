"""The search space of a registered unlearning method: the shared schedule axes plus its own.

A method class declares only its own axes, in its ``search_axes`` class attribute (a dict of
:class:`~lightning_unlearn.search_space.Categorical`, :class:`~lightning_unlearn.search_space.FloatRange`
or :class:`~lightning_unlearn.search_space.IntRange`); :func:`method_space` adds
:data:`~lightning_unlearn.search_space.SCHEDULE_SPACE`, removes what the user fixed and checks
every axis against the method's constructor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lightning_unlearn.search_space import SCHEDULE_SPACE, SearchSpace

if TYPE_CHECKING:  # annotations only
    from lightning_unlearn.unlearning.base import UnlearningMethod


def method_class(method: "str | type[UnlearningMethod]") -> "type[UnlearningMethod]":
    """The method class of a registry name (importing the library's methods first), or ``method`` itself."""
    if isinstance(method, str):
        import lightning_unlearn.unlearning  # noqa: F401  (registers every method)
        from lightning_unlearn.unlearning.registry import get_method

        return get_method(method)
    return method


def method_space(method: "str | type[UnlearningMethod]", fixed: Mapping[str, Any] | None = None) -> SearchSpace:
    """The search space of ``method``: :data:`SCHEDULE_SPACE` plus the method's ``search_axes``,
    less the hyperparameters in ``fixed`` (which become constants).

    A fixed hyperparameter removes its own axis and every axis whose ``excluded_by`` names it
    (fixing TRW's ``expected_similarity`` removes ``beta``).

    Args:
        method: a registry name (``"amun"``) or a method class.
        fixed: hyperparameters given by the user, passed unchanged to every trial.

    Raises:
        ValueError: a name in ``fixed`` that the method does not accept (all named, with the
            accepted ones); a method whose ``search_axes`` redeclare a schedule axis or name a
            hyperparameter its constructor does not accept; an unknown method name.

    Example:
        >>> space = method_space("salun", fixed={"lr": 0.01})
        >>> sorted(space.axes), space.constants["lr"]
        (['mask_ratio', 'step_size'], 0.01)
    """
    cls = method_class(method)
    own = dict(getattr(cls, "search_axes", {}) or {})
    clash = sorted(set(own) & set(SCHEDULE_SPACE.axes))
    if clash:
        raise ValueError(f"{cls.__name__}.search_axes redeclares the shared schedule axes {clash}; declare only the method's own axes")
    accepted = set(cls.hyperparameter_names())
    axes = {**SCHEDULE_SPACE.axes, **own}
    unknown_axes = sorted(set(axes) - accepted)
    if unknown_axes:
        raise ValueError(f"{cls.__name__} does not accept the tuned hyperparameters {unknown_axes}; it accepts {sorted(accepted)}")
    fixed = dict(fixed or {})
    unknown = sorted(set(fixed) - accepted)
    if unknown:
        raise ValueError(f"method {cls.name!r} has no hyperparameter {', '.join(map(repr, unknown))} to fix; it accepts {', '.join(sorted(accepted))}")
    drop = {k for k, a in axes.items() if k in fixed or set(a.excluded_by) & set(fixed)}
    constants = {k: v for k, v in SCHEDULE_SPACE.constants.items() if k not in fixed}
    return SearchSpace({k: a for k, a in axes.items() if k not in drop}, {**constants, **fixed})


__all__ = ["method_class", "method_space"]
