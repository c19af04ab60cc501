"""The errors a command ends with: one line naming the problem and its fix, exit code 2.

Two kinds, so that a caller (and a reader) can tell them apart: `ConfigError`, the input is
wrong and the same command will fail again until it is changed; `ResourceError`, the input may be
fine but something the command needs around it is not there now (a lock another driver holds, a
port in use, a server or cluster that does not answer, a full disk, storage other nodes cannot
see), so the same command can succeed later.
"""


class StudyError(Exception):
    """A command cannot go on; the message says what is wrong and what to do (the CLI prints it
    as one line and exits 2)."""


class ConfigError(StudyError, ValueError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


class ResourceError(StudyError):
    """Something the command needs from its surroundings is missing or busy now; the message
    names it and how to free or reach it."""


def did_you_mean(word: object, options) -> str:
    """' (did you mean X?)' for the closest of `options` to a misspelt `word`, else ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
