"""How a running sweep takes stop signals: the first saves the state, a second skips the rest.

Tune handles the first SIGINT itself: it logs "Stop signal received", ends its loop, saves the
state once more (written to its staging folder, then copied to the study folder, waited on),
and puts back the SIGINT handler it found. That handler is `_pressed_again`, installed here
before `fit`: a second Ctrl-C (or SIGTERM, turned into SIGINT) no longer cuts that last save
short — which lost every trial state since the last copy, and ran trials again on `resume` —
but ends the sweep as soon as the state is saved (`raise_if_pressed_again`, called first thing
at the experiment's end), skipping the closing that would follow. A third ends it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

from study.sweep import tune_logs

TUNE_LOGGER = "ray.tune.tune"  # where Tune says it received a stop signal
_TUNE_STOPPING = threading.Event()  # Tune took the first stop signal
_PRESSED_AGAIN = threading.Event()  # and a second one came


def _heard(record: logging.LogRecord) -> None:
    if record.getMessage().startswith("Stop signal received"):
        _TUNE_STOPPING.set()
        print(
            "stopping: saving the sweep's state to resume from (Ctrl-C again: skip the rest)",
            flush=True,
        )


def _pressed_again(signum, frame) -> None:
    if not _TUNE_STOPPING.is_set() or _PRESSED_AGAIN.is_set():
        raise KeyboardInterrupt  # before Tune listens, or a third time: at once
    _PRESSED_AGAIN.set()
    print(
        "stopping once the state is saved (Ctrl-C again: at once, the save may be cut short)",
        flush=True,
    )


def stop_requested() -> bool:
    """Whether Tune took a stop signal in this `fit` (it saves, then ends its loop)."""
    return _TUNE_STOPPING.is_set()


def raise_if_pressed_again() -> None:
    """End the sweep here (KeyboardInterrupt) if a second stop signal came while Tune saved."""
    if _PRESSED_AGAIN.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """For the duration of a `fit`: SIGTERM (a scheduler's or `kill`'s stop) ends the sweep the
    way Ctrl-C does (Tune itself handles only SIGINT and SIGUSR1), Tune's taking the first one
    is said in a line, and a second one waits for the state to be saved (see the module)."""
    _TUNE_STOPPING.clear()
    _PRESSED_AGAIN.clear()
    previous_term = signal.signal(signal.SIGTERM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    previous_int = signal.signal(signal.SIGINT, _pressed_again)
    try:
        with tune_logs.listening(TUNE_LOGGER, logging.WARNING, _heard):
            yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)
