"""Ending the main job on SIGINT and SIGTERM: one exception, a non-zero exit code, nothing half-written.

:func:`handle_signals` installs, for the duration of a run, handlers that turn SIGINT (Ctrl-C)
and SIGTERM (a batch scheduler, ``docker stop``, ``kill``) into :class:`Interrupted`. The
command line catches it and exits with ``128 + signal number`` (130, 143), as a shell reports a
process ended by that signal.

Why not ``KeyboardInterrupt``: inside ``trainer.fit`` Lightning catches ``KeyboardInterrupt``
and calls ``sys.exit(1)`` (and, for SIGTERM, its own handler only sets a flag and ends the fit
with a ``SystemExit`` that exits 0), so the caller could not tell an interruption from a
failure or a success. :class:`Interrupted` derives from ``BaseException``: Lightning's
``except BaseException`` path tears the trainer down and re-raises it, ``except Exception``
clauses let it pass, and every atomic write removes its temporary file on the way out. During
a fit Lightning's signal connector replaces the SIGTERM handler with one that runs its own
bookkeeping and then the previous handler (this one), so both paths end here.

:func:`deferred_signals` holds the two signals back for the few milliseconds in which the
output folder is put in place, so an interruption never leaves it half replaced; a signal
that arrives meanwhile is delivered right after.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """The run was ended by a signal.

    Attributes:
        signum: the signal number (``signal.SIGINT`` or ``signal.SIGTERM``).
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"

    @property
    def exit_code(self) -> int:
        """``128 + signum``: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + self.signum


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handle_signals(signums: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Raise :class:`Interrupted` in the main thread on each of ``signums`` while inside the block.

    Only the first signal raises; a second one while the first is being handled (temporary
    files removed, the message printed) is ignored. The previous handlers are restored on exit.
    Outside the main thread (where Python cannot install handlers) this does nothing.
    """
    if not _main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextmanager
def deferred_signals(signums: tuple[int, ...] = SIGNALS) -> Iterator[None]:
    """Block ``signums`` inside the block; one that arrives meanwhile is delivered on exit.

    A no-op where ``signal.pthread_sigmask`` is missing (Windows) or outside the main thread.
    """
    if not hasattr(signal, "pthread_sigmask") or not _main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signums)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


__all__ = ["SIGNALS", "Interrupted", "deferred_signals", "handle_signals"]
