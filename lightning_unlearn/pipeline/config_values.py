"""The values of :class:`~lightning_unlearn.pipeline.BenchmarkConfig`: their text forms and their checks.

Every setting accepts the command line's text as well as the Python value: the parsers here turn
``"0,1,2"`` into ``(0, 1, 2)`` and ``"trw.tau=0.5"`` into ``{"trw": {"tau": 0.5}}``, and the
checks raise :class:`ConfigError` with one line naming the setting, the bad value and what is
allowed. Each config section declares which parser a field uses (``field(metadata=parsed_by(...))``)
and which checks its ``validate`` runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """Bad user input (unknown name, inapplicable method, missing directory, ...).

    The message is one line naming the bad value and the allowed ones; the command line
    prints it and exits with code 2.
    """


# ---------------------------------------------------------------------------- text forms
#: A field's parser: ``(value, field name) -> value``; it accepts the Python value and the text form.
Parser = Callable[[Any, str], Any]


def parsed_by(parse: Parser) -> dict[str, Parser]:
    """Field metadata naming the parser of a config field (applied by the section's ``__post_init__``)."""
    return {"parse": parse}


def setting(default: Any, parse: Parser | None = None, *, choices: tuple[str, ...] | None = None, **kwargs: Any) -> Any:
    """A config field with a default, a parser and/or its allowed values (``dataclasses.field`` with metadata).

    Args:
        default: the default value.
        parse: turns the text form into the value (:func:`parsed_by`).
        choices: the allowed values (imported from where they are defined); the section's
            check rejects any other and the command line's help lists them.
        kwargs: passed to :func:`dataclasses.field`.
    """
    metadata = {**(parsed_by(parse) if parse else {}), **({"choices": choices} if choices else {})}
    return field(default=default, metadata=metadata, **kwargs)


def parse_list(value: Any, kind: Callable[[str], Any], name: str) -> tuple | None:
    """A comma-separated list (the command line's form) or any sequence -> a tuple of ``kind``.

    Example:
        >>> parse_list("0, 1,2", int, "seeds"), parse_list([0.1], float, "tune_lrs"), parse_list(None, int, "seeds")
        ((0, 1, 2), (0.1,), None)

    Raises:
        ConfigError: an empty list (except ``seeds``, whose emptiness the check reports) or an
            item that is not a ``kind``.
    """
    if value is None:
        return None
    items = [t.strip() for t in value.split(",") if t.strip()] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        out = tuple(kind(v) for v in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a comma-separated list of {kind.__name__} values, got {value!r}") from None
    if not out and name != "seeds":
        raise ConfigError(f"{name} must not be empty, got {value!r}")
    return out


def list_of(kind: Callable[[str], Any]) -> Parser:
    """The parser of a list field of ``kind`` items (:func:`parse_list`)."""

    def parse(value: Any, name: str) -> tuple | None:
        return parse_list(value, kind, name)

    return parse


def _scalar(text: str) -> Any:
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text.strip()


def parse_hparams(value: Any, name: str = "hparams") -> dict[str, dict[str, Any]] | None:
    """Fixed hyperparameters: ``"METHOD.NAME=VALUE[,METHOD.NAME=VALUE...]"`` or ``{METHOD: {NAME: VALUE}}``.

    Values of the text form are read as ``None``/``none``, ``true``/``false``, integers,
    floats, or else strings.

    Example:
        >>> parse_hparams("trw.tau=0.5,trw.pca_dim=none,amun.lr=1e-2")
        {'trw': {'tau': 0.5, 'pca_dim': None}, 'amun': {'lr': 0.01}}

    Raises:
        ConfigError: an item not of the form ``METHOD.NAME=VALUE``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        out: dict[str, dict[str, Any]] = {}
        for item in (t.strip() for t in value.split(",") if t.strip()):
            left, eq, right = item.partition("=")
            method, dot, hp = left.strip().partition(".")
            if not eq or not dot or not method or not hp:
                raise ConfigError(f"bad hyperparameter {item!r}: expected METHOD.NAME=VALUE, e.g. trw.tau=0.5")
            out.setdefault(method, {})[hp] = _scalar(right)
        return out
    if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
        return {str(m): dict(hp) for m, hp in value.items()}
    raise ConfigError(f"{name} must be 'METHOD.NAME=VALUE,...' or a dict of dicts, got {value!r}")


def optional_int(value: Any, name: str) -> int | None:
    """``None`` / ``"none"`` -> ``None``; an integer or its text -> ``int``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return None
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer or None, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be an integer or None, got {value!r}") from None


def none_as_text(value: Any, name: str) -> Any:
    """``None`` -> ``"none"`` (an augmentation setting's Python spelling of "no augmentation")."""
    return "none" if value is None else value


def as_text(value: Any, name: str) -> Any:
    """An integer (``devices: 2`` in a YAML file) -> its text; other values unchanged."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def expand_path(value: Any, name: str) -> Any:
    """``$VAR`` / ``${VAR}`` and ``~`` expanded in a path (normalised when something was expanded).

    An unset variable is left as written, for the check to report. Paths without ``$`` or a
    leading ``~`` are returned unchanged (they are part of cache keys).
    """
    if not isinstance(value, str) or ("$" not in value and not value.startswith("~")):
        return value
    expanded = os.path.expanduser(os.path.expandvars(value))
    return expanded if "$" in expanded else os.path.normpath(expanded)


# ---------------------------------------------------------------------------- checks
def check_choice(value: Any, allowed: Iterable[str], what: str) -> None:
    """``value`` is one of ``allowed``, else ``ConfigError("unknown WHAT 'value': expected one of ...")``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}: expected one of {', '.join(allowed)}")


def check_positive(section: Any, *names: str, integer: bool = True) -> None:
    """Each named field of ``section`` is ``None`` or positive."""
    for name in names:
        v = getattr(section, name)
        if v is not None and v <= 0:
            raise ConfigError(f"{name} must be a positive {'integer' if integer else 'number'}, got {v}")


def unset_variable(value: str | None) -> str | None:
    """The first ``$VAR`` left unexpanded in ``value`` (an unset environment variable), or ``None``."""
    import re

    match = re.search(r"\$\{?(\w+)\}?", value or "")
    return match.group(1) if match else None


__all__ = [
    "ConfigError", "Parser", "as_text", "check_choice", "check_positive", "expand_path", "list_of", "none_as_text", "optional_int",
    "parse_hparams", "parse_list", "parsed_by", "setting", "unset_variable",
]
