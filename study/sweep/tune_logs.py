"""What Tune tells its loggers, heard where the tool needs it, however quiet it keeps them.

The tool silences Ray's loggers (`study.cli.commands.quiet_libraries`): their lines repeat or
contradict its own. Two of them carry news it must act on: that a restore failed (Tune then
starts the study again from nothing, `study.sweep.restored`) and that a stop signal was
received (the driver says it is stopping, `study.sweep.ending`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator


class _Call(logging.Handler):
    def __init__(self, on_record: Callable[[logging.LogRecord], None], level: int) -> None:
        super().__init__(level)
        self.on_record = on_record

    def emit(self, record: logging.LogRecord) -> None:
        self.on_record(record)


@contextlib.contextmanager
def listening(
    name: str, level: int, on_record: Callable[[logging.LogRecord], None]
) -> Iterator[None]:
    """Call `on_record` with every record of logger `name` at `level` or above meanwhile. A
    logger the tool keeps quieter than `level` stays silent on the terminal (its records stop
    here); one it does not (`--verbose`) keeps printing as before."""
    logger = logging.getLogger(name)
    handler = _Call(on_record, level)
    saved = logger.level, logger.propagate
    quiet = logger.getEffectiveLevel() > level
    logger.addHandler(handler)
    logger.setLevel(min(level, logger.getEffectiveLevel()))
    logger.propagate = logger.propagate and not quiet
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
