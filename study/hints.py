"""The commands the tool suggests, spelled so that pasting them works where they are printed."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def study_command(args: str) -> str:
    """`python -m study ARGS` with the interpreter that runs this process, unless it is the
    `python` on PATH: after `make quickstart` only `.venv/bin/python` has the package, and a
    bare `python` would fail with "No module named study"."""
    return f"{python()} -m study {args}"


def resume_command(name: str, storage: str | Path) -> str:
    """The command that resumes study `name` kept in `storage` (a folder, or an object store's
    URI, quoted for the shell): with `--storage` unless it is the default storage, where a bare
    `resume NAME` looks."""
    return study_command(f"resume {name}{storage_option(storage)}")


def storage_option(storage: str | Path) -> str:
    """` --storage STORAGE` as a command needs it: nothing for the default storage."""
    from study.sweep.folder import default_storage

    if "://" in str(storage):
        return f" --storage {shlex.quote(str(storage))}"
    where = Path(storage).expanduser().resolve()
    return "" if where == default_storage() else f" --storage {where}"


def python() -> str:
    """This interpreter as a user would type it here: `python` when that is the one on PATH,
    else its path, relative to the current folder when it lies below it."""
    exe = os.path.abspath(sys.executable)  # not resolved: a venv's python links to another
    on_path = shutil.which("python")
    if on_path and os.path.abspath(on_path) == exe:
        return "python"
    relative = os.path.relpath(exe)
    return relative if not relative.startswith("..") else exe
