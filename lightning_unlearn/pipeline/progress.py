"""Progress display: one bar per stage (rich when available) and the final table.

:class:`Progress` is the interface the pipeline talks to; :class:`NullProgress` (the default
of :func:`~lightning_unlearn.pipeline.run_experiment`) shows nothing and :class:`RichProgress`
(the command line) draws a bar per stage on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


class Progress:
    """Stage-level progress. ``with progress.stage("train", total=3): progress.advance()``."""

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[None]:
        yield

    def advance(self, detail: str = "") -> None:
        pass

    def message(self, text: str) -> None:
        pass

    def close(self) -> None:
        pass


class NullProgress(Progress):
    """Shows nothing (library use and tests)."""


class LineProgress(Progress):
    """One plain line per finished step on stderr (logs, CI, non-terminal output)."""

    def __init__(self, stream=None, *, prefix: str = "") -> None:
        self._stream = stream or sys.stderr
        self._prefix = f"{prefix}: " if prefix else ""
        self._name, self._total, self._done, self._t0 = "", 0, 0, 0.0

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[None]:
        self._name, self._total, self._done, self._t0 = name, total, 0, time.perf_counter()
        yield
        print(f"{self._prefix}[{name}] done in {time.perf_counter() - self._t0:.1f} s", file=self._stream, flush=True)

    def advance(self, detail: str = "") -> None:
        self._done += 1
        print(f"{self._prefix}[{self._name} {self._done}/{self._total} {time.perf_counter() - self._t0:6.1f} s] {detail}", file=self._stream, flush=True)

    def message(self, text: str) -> None:
        print(f"{self._prefix}{text}", file=self._stream, flush=True)


def make_progress(*, quiet: bool = False, prefix: str = "") -> Progress:
    """Rich bars on a terminal, plain lines otherwise (each starting with ``prefix:`` when given: a
    worker's name, since several share one terminal), nothing when ``quiet``."""
    if quiet:
        return NullProgress()
    if sys.stderr.isatty() and not prefix:
        return RichProgress()
    return LineProgress(prefix=prefix)


class RichProgress(Progress):
    """A ``rich`` progress bar per stage on stderr; plain lines if ``rich`` is missing."""

    def __init__(self) -> None:
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as _P
        except ImportError:  # pragma: no cover - rich ships with lightning's extras
            self._p = None
            return
        self._console = Console(stderr=True)
        self._p = _P(
            TextColumn("[bold]{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self._console,
        )
        self._p.start()
        self._task = None

    @contextmanager
    def stage(self, name: str, total: int) -> Iterator[None]:
        if self._p is None:
            print(f"[{name}] 0/{total}", file=sys.stderr)
            yield
            return
        self._task = self._p.add_task(name, total=max(total, 1), detail="")
        try:
            yield
        finally:
            self._p.update(self._task, completed=max(total, 1), detail="")
            self._task = None

    def advance(self, detail: str = "") -> None:
        if self._p is None:
            print(f"  done: {detail}", file=sys.stderr)
        elif self._task is not None:
            self._p.update(self._task, advance=1, detail=detail)

    def message(self, text: str) -> None:
        if self._p is None:
            print(text, file=sys.stderr)
        else:
            self._p.console.print(text)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def print_table(markdown_table: str, *, title: str = "") -> None:
    """Print the final table (rich when available) to stdout."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover
        print(title)
        print(markdown_table)
        return
    lines = [ln for ln in markdown_table.strip().splitlines() if ln.strip()]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = Table(title=title or None)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for ln in lines[2:]:
        table.add_row(*[c.strip() for c in ln.strip("|").split("|")])
    Console(width=max(100, 16 * len(header))).print(table)
