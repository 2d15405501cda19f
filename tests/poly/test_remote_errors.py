"""beast.poly.remote_errors: a server traceback becomes the env's own exception type, or stays
RuntimeError when that type is not a built-in or gymnasium.error one."""

from __future__ import annotations

import gymnasium as gym
import pytest

from beast.poly.remote_errors import remote_error

TRACEBACK = "env server 127.0.0.1:1: Traceback (most recent call last):\n  File \"x.py\"\n{}\n"


@pytest.mark.parametrize("last, expected", [
    ("IndexError: list index out of range", IndexError),
    ("AssertionError", AssertionError),
    ("gymnasium.error.ResetNeeded: call reset first", gym.error.ResetNeeded),
    ("my_pkg.errors.EnvBroke: no", RuntimeError),
    ("RuntimeError: faulty env", RuntimeError),
    ("SystemExit: 3", RuntimeError),  # not an Exception subclass: never raised from a reply
])
def test_the_last_traceback_line_picks_the_type(last: str, expected: type) -> None:
    error = RuntimeError(TRACEBACK.format(last))
    mapped = remote_error(error)
    assert type(mapped) is expected
    assert str(error) in str(mapped)
    assert mapped is error or mapped.__cause__ is error
