"""Gymnasium's get_attr / set_attr / call across the wire: both ends of an ATTR request.

    client: arrays = attr_request("call", "render")       -> EnvClient.attr(arrays)
    server: serve_attr(vector_env, arrays)                -> the ATTR_RESULT's arrays
    client: attr_results(reply)                           -> one value per env of that server

The server runs the vector env's own get_attr / set_attr / call (SyncVectorEnv's semantics:
get_attr calls a callable attribute, set_attr takes one value or one per env). Names,
arguments and results are typed arrays (beast.poly.wire_values): numbers, strings, None and
numeric arrays. Anything else raises TypeError on the side holding it, naming it.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from beast.poly.wire_values import decode_values, encode_value, encode_values, indexed

OPS = ("get", "set", "call")


def _text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode(), np.uint8).copy()


def attr_request(op: str, name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None,
                 values: Sequence[Any] | None = None) -> dict[str, np.ndarray]:
    """The ATTR arrays for `op` on attribute `name` (values: one per env of that server)."""
    if op not in OPS:
        raise ValueError(f"ATTR op must be one of {OPS}, got {op!r}")
    if not isinstance(name, str):
        raise TypeError(f"attribute names are str, got {name!r}")
    arrays = {"op": _text(op), "name": _text(name)}
    arrays.update(encode_values("arg/", {str(i): a for i, a in enumerate(args)},
                                f"argument of call({name!r})"))
    arrays.update(encode_values("kwarg/", kwargs or {}, f"keyword argument of call({name!r})"))
    if values is not None:
        arrays.update(encode_values("value/", {str(i): v for i, v in enumerate(values)},
                                    f"value for set_attr({name!r})"))
    return arrays


def attr_results(arrays: dict[str, np.ndarray]) -> list[Any]:
    """The per-env values of an ATTR_RESULT, in env order."""
    return indexed(decode_values(arrays, "result/"))


def serve_attr(env: Any, request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run one ATTR request on `env` (a VectorEnv); its results as ATTR_RESULT arrays."""
    op = request["op"].tobytes().decode()
    name = request["name"].tobytes().decode()
    if op == "get":
        results: Sequence[Any] = env.get_attr(name)
    elif op == "set":
        env.set_attr(name, indexed(decode_values(request, "value/")))
        results = ()
    elif op == "call":
        args = indexed(decode_values(request, "arg/"))
        results = env.call(name, *args, **decode_values(request, "kwarg/"))
    else:
        raise ValueError(f"ATTR op must be one of {OPS}, got {op!r}")
    arrays = {}
    for i, result in enumerate(results):
        key, array = encode_value("result/", str(i), result, f"{op} {name!r}: env {i}'s result")
        arrays[key] = array
    return arrays
