"""Errors raised for bad configuration: the CLI turns them into one-line messages and exit code 2."""


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the key, the value and what is allowed."""
