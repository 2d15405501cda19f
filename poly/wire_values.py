"""Python values as named wire arrays and back: what reset options, attribute calls and infos carry.

The wire (csrc/net/wire.h) carries typed arrays and nothing else: no pickle, so nothing a peer
sends can run code here. Gymnasium's reset options, get_attr / set_attr / call values and infos
are mostly numbers, strings and NumPy arrays, so each travels as one array whose name says how
to rebuild it, ``<prefix><key>:<kind>``:

    a  a NumPy array of a wire dtype          -> the same array
    g  a NumPy scalar (np.float32(1.5))       -> the same NumPy scalar
    p  a Python bool, int or float            -> the same Python value
    s  a str                                  -> the same str (sent as utf-8 bytes)
    n  None                                   -> None

Anything else (a dict, a list, an object, a uint32 array) raises TypeError naming what could
not be carried, on the side that tried to send it: nothing is dropped silently. Infos are the
exception that needs no kind: a vector env's info entries are already [K, ...] arrays, sent as
``info/<path>`` (a nested dict's keys joined by '/').
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

WIRE_DTYPES = tuple(np.dtype(t) for t in (np.bool_, np.int8, np.uint8, np.int16, np.int32,
                                          np.int64, np.float16, np.float32, np.float64))
MAX_NAME_BYTES = 255  # csrc/net/wire.h
INFO_PREFIX = "info/"
CARRIED = "numbers, strings, None and arrays of bool, int8/16/32/64, uint8 or float16/32/64"


def _wire_array(value: np.ndarray, what: str) -> np.ndarray:
    if value.dtype not in WIRE_DTYPES:
        raise TypeError(f"{what} has dtype {value.dtype}, which the env server wire cannot carry "
                        f"(it carries {CARRIED}; nothing is pickled)")
    # (np.ascontiguousarray would make a 0-d array 1-d)
    return np.asarray(value.astype(value.dtype.newbyteorder("="), copy=False), order="C")


def _name(prefix: str, key: str, kind: str) -> str:
    name = f"{prefix}{key}:{kind}"
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ValueError(f"{prefix}{key!r} is too long a name for the wire (at most "
                         f"{MAX_NAME_BYTES} bytes with its prefix)")
    return name


def encode_value(prefix: str, key: str, value: Any, what: str) -> tuple[str, np.ndarray]:
    """(name, array) carrying `value`; TypeError naming `what` if the wire cannot carry it."""
    if value is None:
        return _name(prefix, key, "n"), np.zeros(0, np.bool_)
    if isinstance(value, str):
        return _name(prefix, key, "s"), np.frombuffer(value.encode(), np.uint8).copy()
    if isinstance(value, (bool, int, float)):
        try:
            array = np.asarray(value)
        except OverflowError:
            array = np.asarray(object())
        return _name(prefix, key, "p"), _wire_array(array, f"{what} ({value!r})")
    if isinstance(value, np.generic):
        return _name(prefix, key, "g"), _wire_array(np.asarray(value), f"{what} ({value!r})")
    if isinstance(value, np.ndarray):
        return _name(prefix, key, "a"), _wire_array(value, what)
    raise TypeError(f"{what} is a {type(value).__name__}, which the env server wire cannot carry "
                    f"(it carries {CARRIED}; nothing is pickled)")


def encode_values(prefix: str, values: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
    """Every entry of `values` as an array named `<prefix><key>:<kind>`."""
    arrays = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise TypeError(f"{what} keys must be str to travel to an env server, got {key!r}")
        name, array = encode_value(prefix, key, value, f"{what} {key!r}")
        arrays[name] = array
    return arrays


def decode_value(kind: str, array: np.ndarray, name: str) -> Any:
    """The value an array of this kind carries (ValueError for an unknown kind)."""
    if kind == "n":
        return None
    if kind == "s":
        return np.asarray(array, np.uint8).tobytes().decode()
    if kind == "p":
        return array.item()
    if kind == "g":
        return array[()]
    if kind == "a":
        return np.array(array)  # owns its bytes (the wire's buffer goes with the frame)
    raise ValueError(f"wire value {name!r} has an unknown kind {kind!r} (a, g, p, s or n)")


def decode_values(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, Any]:
    """{key: value} for every array named `<prefix><key>:<kind>`."""
    values = {}
    for name, array in arrays.items():
        if name.startswith(prefix):
            key, sep, kind = name[len(prefix):].rpartition(":")
            if not sep:
                raise ValueError(f"wire value {name!r} has no ':<kind>' suffix")
            values[key] = decode_value(kind, array, name)
    return values


def indexed(values: Mapping[str, Any]) -> list[Any]:
    """The values of keys "0".."n-1" in order (ValueError if one is missing)."""
    try:
        return [values[str(i)] for i in range(len(values))]
    except KeyError as exc:
        raise ValueError(f"wire values are not numbered 0..{len(values) - 1}: {sorted(values)}") from exc


def encode_info(info: Mapping[str, Any], num_envs: int, path: str = "") -> dict[str, np.ndarray]:
    """A vector env's info as `info/<path>` arrays [num_envs, ...]: its numeric entries only
    (entries of other dtypes, e.g. object arrays of strings, are not carried)."""
    arrays = {}
    for key, value in info.items():
        name = f"{path}{key}"
        if isinstance(value, Mapping):
            arrays.update(encode_info(value, num_envs, name + "/"))
            continue
        value = np.asarray(value)
        if value.ndim >= 1 and value.shape[0] == num_envs and value.dtype in WIRE_DTYPES:
            arrays[INFO_PREFIX + name] = _wire_array(value, f"info {name!r}")
    return arrays


def decode_info(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The nested info dict that `encode_info` flattened."""
    info: dict[str, Any] = {}
    for name, array in arrays.items():
        if not name.startswith(INFO_PREFIX):
            continue
        *parents, leaf = name[len(INFO_PREFIX):].split("/")
        node = info
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = np.array(array)
    return info
