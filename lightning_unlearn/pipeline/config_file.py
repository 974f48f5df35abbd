"""YAML files and command-line options of :class:`~lightning_unlearn.pipeline.BenchmarkConfig`, derived from its schema.

A `jsonargparse <https://jsonargparse.readthedocs.io>`_ parser (the library behind
LightningCLI) is built from the config sections: every field ``F`` of section ``S`` is the
option ``--S.F`` (typed, defaulted and documented by the field), ``--config FILE.yaml`` reads
a YAML file of sections and ``--print_config`` writes one. Each field also has its flat
spelling, ``--F`` with dashes (``--max-train 400`` is ``--data.max_train 400``, ``--no-remain``
is ``--data.no_remain true``), generated from :data:`~lightning_unlearn.pipeline.config.FLAT_FIELDS`;
list and dict fields take the command line's text in both spellings (``--seeds 0,1,2``,
``--hparams trw.tau=0.5``) as well as YAML (``--unlearning.seeds [0,1,2]``). Options are read
left to right: a later option overrides an earlier one and the ``--config`` file it follows.

A YAML config file (``benchmarks/configs/`` holds the presets of the benchmark scripts)::

    data:
      dataset: ${LIGHTNING_UNLEARN_DATA}/cifar10    # $VAR and ~ are expanded
      max_train: 1000
    models:
      width: 24
    unlearning:
      seeds: [0, 1, 2]

:func:`load_config` reads such files exactly as ``lightning-unlearn benchmark --config`` does.
Every error is one line (:class:`~lightning_unlearn.pipeline.ConfigError`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import json
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_unlearn.pipeline.config import FLAT_FIELDS, SECTIONS, BenchmarkConfig, ConfigError, field_docs, section_fields

if typing.TYPE_CHECKING:
    from jsonargparse import ArgumentParser, Namespace


def flat_option(name: str) -> str:
    """The flat command-line spelling of field ``name`` (``max_train`` -> ``--max-train``)."""
    return "--" + name.replace("_", "-")


@functools.cache
def _fields() -> dict[str, tuple[str, Any]]:
    """``{"section.field": (flat name, type hint)}`` of every field."""
    out = {}
    for section, kind in SECTIONS.items():
        hints = typing.get_type_hints(kind)
        for name in section_fields(kind):
            out[f"{section}.{name}"] = (name, hints[name])
    return out


#: ``{"--max-train": "data.max_train", ...}``: the flat options, generated from the schema
FLAT_OPTIONS: dict[str, str] = {flat_option(name): f"{section}.{name}" for name, section in FLAT_FIELDS.items()}


def _is_collection(hint: Any) -> bool:
    """Whether a type hint is (optionally) a tuple or a dict: a field with a comma text form."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return any(typing.get_origin(a) in (tuple, dict) for a in args)


def plain_text(doc: str) -> str:
    """A docstring as terminal text: ````x```` -> ``x``, ``:func:`~a.b.name``` -> ``name``.

    Example:
        >>> plain_text("``None``: :func:`~lightning_unlearn.training.default_epochs` of ``model``")
        'None: default_epochs of model'
    """
    text = re.sub(r":\w+:`~?([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], doc)
    return text.replace("``", "")


def _type_text(hint: Any) -> str:
    text = re.sub(r"\btyping\.", "", str(hint)).replace("NoneType", "null")
    return re.sub(r"<class '(\w+)'>", r"\1", text)


# ---------------------------------------------------------------------------- the parser
def add_config_arguments(parser: ArgumentParser) -> None:
    """Add ``--config``, ``--print_config`` and every section's fields (``--data.max_train``, ...) to ``parser``.

    Each option's help is the field's docstring plus its flat spelling.
    """
    from jsonargparse import ActionConfigFile

    parser.add_argument("--config", action=ActionConfigFile, help="A YAML file of settings by section (as --print_config writes them).")
    for section, kind in SECTIONS.items():
        parser.add_class_arguments(kind, section, help=f"{section}: {plain_text((kind.__doc__ or '').strip().splitlines()[0])}")
        docs, hints, metadata = field_docs(kind), typing.get_type_hints(kind), {f.name: f.metadata for f in dataclasses.fields(kind)}
        for action in parser._actions:
            _, _, name = action.dest.partition(".")
            if action.dest.startswith(section + ".") and name in docs:
                choices = metadata[name].get("choices")
                alone = " (without a value: true)" if hints[name] is bool else ""
                action.help = (f"{plain_text(docs[name])}" + (f" One of: {', '.join(choices)}." if choices else "")
                               + f" Also {flat_option(name)}{alone}.")


#: the options of a ``benchmark`` run that are not config settings (``--print_config`` writes them too)
RUN_OPTIONS = ("out", "overwrite", "threads", "quiet", "verbose", "workers", "study")


def add_run_arguments(parser: ArgumentParser, *, out_required: bool = True) -> None:
    """Add the run's own options (:data:`RUN_OPTIONS`: ``--out``, ``--overwrite``, ``--threads``, ``--quiet``, ``-v``, ``--workers``,
    ``--study``) to ``parser``."""
    run = parser.add_argument_group("the run (not part of the config)")
    run.add_argument("--out", required=out_required, help="Output directory (results.json, report.md, figures); may exist and hold other files.")
    run.add_argument("--overwrite", action="store_true",
                     help="Replace the results of a previous run in --out (only files lightning-unlearn wrote; others are kept).")
    run.add_argument("--threads", type=int, default=1,
                     help="CPU threads per process for torch (1: reproducible, and fastest for small models and on a shared machine).")
    run.add_argument("--quiet", action="store_true", help="No progress bars.")
    run.add_argument("-v", "--verbose", action="store_true", help="Log every step.")
    run.add_argument("--workers", type=int, default=1,
                     help="Worker processes on this machine (one GPU each when there are GPUs); 1: this process works alone. "
                     "More workers may join from anywhere: lightning-unlearn worker --storage URL.")
    run.add_argument("--study", default="runs",
                     help="The name of the run's study in the storage (default runs); another name lets one database hold several runs.")


def config_parser(**kwargs: Any) -> ArgumentParser:
    """A jsonargparse parser of the config sections and the run's options, none required (``exit_on_error=False``: errors raise).

    Files written by ``lightning-unlearn benchmark --print_config`` hold the run's options too;
    they are read and left out of the config.
    """
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False, **kwargs)
    add_config_arguments(parser)
    add_run_arguments(parser, out_required=False)
    return parser


def expand_flat_options(argv: Sequence[str]) -> list[str]:
    """``argv`` with every flat option in its nested spelling and every comma list as YAML.

    ``--max-train 400`` -> ``--data.max_train=400``; ``--no-remain`` -> ``--data.no_remain=true``;
    ``--seeds 0,1`` and ``--unlearning.seeds 0,1`` -> ``--unlearning.seeds=[0, 1]``;
    ``--hparams trw.tau=0.5`` -> ``--unlearning.hparams={"trw": {"tau": 0.5}}``. Other tokens
    pass unchanged (``--`` ends the options).

    Example:
        >>> expand_flat_options(["--max-train", "400", "--no-remain", "--seeds", "0,1", "--out", "x"])
        ['--data.max_train=400', '--data.no_remain=true', '--unlearning.seeds=[0, 1]', '--out', 'x']

    Raises:
        ConfigError: a list or dict whose text does not parse, naming the option; a ``--config`` file that gives a key twice.
    """
    check_config_files(argv)
    fields = _fields()
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token == "--":
            out += [token, *argv[i:]]
            break
        option, eq, inline = token.partition("=")
        key = FLAT_OPTIONS.get(option) or (option[2:] if option.startswith("--") and option[2:] in fields else None)
        if key is None:
            out.append(token)
            continue
        name, hint = fields[key]
        flat = option in FLAT_OPTIONS
        if hint is bool and flat and not eq:
            out.append(f"--{key}=true")
            continue
        if not eq:
            if i >= len(argv):  # jsonargparse says that a value is missing
                out.append(f"--{key}")
                continue
            inline, i = argv[i], i + 1
        if _is_collection(hint) and inline.strip().lower() in ("null", "none"):
            inline = "null"
        elif _is_collection(hint) and not inline.lstrip().startswith(("[", "{")):
            parse = SECTIONS[key.partition(".")[0]].__dataclass_fields__[name].metadata["parse"]
            try:
                inline = json.dumps(parse(inline, name))
            except ConfigError as err:
                raise ConfigError(f"{option}: {err}") from None
        out.append(f"--{key}={inline}")
    return out


def one_line(err: BaseException) -> str:
    """jsonargparse's (often multi-line) error as one line naming the option, the value and what is allowed."""
    text = str(err).strip()
    fields = _fields()
    key = re.search(r'Parser key "([\w.]+)"', text)
    if key and key.group(1) in fields:
        given = re.search(r"(?:Given|Got) value:\s*(.*)", text)
        name, hint = fields[key.group(1)]
        value = given.group(1).strip() if given else "?"
        return f"--{key.group(1)} (also {flat_option(name)}) expects {_type_text(hint)}, got {value!r}"
    unknown = re.search(r"unrecognized arguments: (\S+)", text) or re.search(r"does not accept option '([\w.]+)'", text)
    if unknown:
        option = unknown.group(1).partition("=")[0]
        name = option.lstrip("-")
        section, dot, field_name = name.partition(".")
        if dot and section in SECTIONS:
            return f"unknown option {option!r}: section {section} has {', '.join(section_fields(SECTIONS[section]))}"
        known = list(FLAT_OPTIONS) + [f"--{k}" for k in fields]
        close = difflib.get_close_matches("--" + name, known, n=3)
        return f"unknown option {option!r}" + (f": did you mean {' or '.join(close)}?" if close else "")
    return " ".join(text.split())


def duplicate_keys(text: str) -> list[str]:
    r"""The keys that a YAML mapping of ``text`` gives twice, as dotted paths (``["data"]``).

    YAML loaders keep the last of two equal keys without a word, so a config file that says
    ``data:`` twice would silently lose the first section; :func:`parse_config_args` refuses it.

    >>> duplicate_keys("data:\n  max_train: 1\nmodels: {}\ndata:\n  forget: class:1\n")
    ['data']
    """
    import yaml

    found: list[str] = []

    class _Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [loader.construct_object(k, deep=True) for k, _ in node.value]
        found.extend(str(k) for i, k in enumerate(keys) if k in keys[:i])
        return loader.construct_mapping(node, deep=deep)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    return found


def check_config_files(argv: Sequence[str]) -> None:
    """Refuse a ``--config FILE`` of ``argv`` that gives a key twice (:func:`duplicate_keys`).

    Raises:
        ConfigError: naming the file and the keys.
    """
    import yaml

    files = [argv[i + 1] for i, t in enumerate(argv[:-1]) if t == "--config"] + [t.partition("=")[2] for t in argv if t.startswith("--config=")]
    for path in files:
        try:
            twice = duplicate_keys(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue  # missing or unreadable: jsonargparse names it when it parses
        if twice:
            raise ConfigError(f"config file {path!r} gives {', '.join(sorted(set(twice)))} twice (YAML keeps only the last): merge them")


def parse_config_args(parser: ArgumentParser, argv: Sequence[str]) -> Namespace:
    """``parser.parse_args`` after :func:`expand_flat_options`; every error becomes a one-line :class:`ConfigError`."""
    expanded = expand_flat_options(argv)
    try:
        return parser.parse_args(expanded)
    except argparse.ArgumentError as err:
        raise ConfigError(one_line(err)) from None


def config_from_namespace(namespace: Namespace) -> BenchmarkConfig:
    """The config of a parsed namespace (its section entries; other entries are ignored)."""
    return BenchmarkConfig(**{name: kind(**namespace[name].as_dict()) for name, kind in SECTIONS.items()})


# ---------------------------------------------------------------------------- files
def load_config(*paths: str | Path, **settings: Any) -> BenchmarkConfig:
    """The config of YAML files (later files override earlier ones), then ``settings`` by flat name or section.

    Reads the files as ``lightning-unlearn benchmark --config FILE`` does.

    Raises:
        ConfigError: a missing file, an unknown key or a value of the wrong type (one line).
    """
    argv = []
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        argv += ["--config", str(path)]
    config = config_from_namespace(parse_config_args(config_parser(), argv))
    return config.replace(**settings) if settings else config


def dump_config(config: BenchmarkConfig) -> str:
    """The YAML text of ``config``'s sections (what ``--print_config`` writes; :func:`load_config` reads it back)."""
    parser = config_parser()
    nested = {name: _plain(dataclass_dict(section)) for name, section in config.sections().items()}
    return parser.dump(parser.parse_object(nested), skip_none=False)


def dataclass_dict(section: Any) -> dict[str, Any]:
    """A section's fields as a dict (shallow)."""
    return {name: getattr(section, name) for name in section_fields(type(section))}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


__all__ = [
    "FLAT_OPTIONS", "RUN_OPTIONS", "add_config_arguments", "add_run_arguments", "config_from_namespace", "config_parser", "dump_config",
    "expand_flat_options", "flat_option", "load_config", "one_line", "parse_config_args", "plain_text",
]
