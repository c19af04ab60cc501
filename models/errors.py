"""Errors raised for bad configuration: the CLI turns them into one-line messages and exit code 2."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""


def did_you_mean(word: object, options) -> str:
    """' (did you mean X?)' for the closest of `options` to a misspelt `word`, else ''."""
    import difflib

    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
