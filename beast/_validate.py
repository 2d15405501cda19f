"""The one validation helper every config group uses (beast.config, beast.loss_config)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which field and why."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
