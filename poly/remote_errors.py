"""An env's exception on a server, raised on the client with the same built-in type.

A SyncVectorEnv lets its envs' exceptions through: CartPole's out-of-range action is an
AssertionError, Acrobot's an IndexError. The server sends the traceback as text (never a pickle),
which EnvClient raises as RuntimeError; `remote_error` reads the exception's type name from the
traceback's last line and, when it is a built-in or a `gymnasium.error` exception, makes one of
that type with the whole traceback as its message. Other types stay RuntimeError.
"""

from __future__ import annotations

import builtins
import re

import gymnasium as gym

_LAST_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")
_GYM_ERROR_PREFIX = "gymnasium.error."


def _exception_class(name: str) -> type[Exception] | None:
    if name.startswith(_GYM_ERROR_PREFIX):
        found = getattr(gym.error, name[len(_GYM_ERROR_PREFIX):], None)
    else:
        found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Exception) and found is not RuntimeError:
        return found
    return None


def remote_error(error: RuntimeError) -> Exception:
    """The exception to raise for `error` (EnvClient's RuntimeError): the env's own type when
    it is a built-in or gymnasium.error one, else `error` itself."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    match = _LAST_LINE.match(lines[-1]) if lines else None
    cls = _exception_class(match.group(1)) if match else None
    if cls is None:
        return error
    try:
        mapped = cls(str(error))
    except Exception:  # an exception class with another signature: keep the RuntimeError
        return error
    mapped.__cause__ = error
    return mapped
