"""What every config group uses (beast.config, beast.loss_config): the validation helper, and
the field docstrings read from the source, which are both the --help text (beast.flags) and
the "Fields:" section of each group's `help()`."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import textwrap


class ConfigError(ValueError):
    """A configuration value is invalid; the message says which field and why."""


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@functools.lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (read from its source)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def document_fields(cls: type) -> type:
    """Class decorator (above @dataclass): append a "Fields:" section to `cls.__doc__`, one
    `name: type = default` line per field with its docstring under it, so `help(cls)` shows
    what --help shows. Without the source (e.g. a .pyc-only install) the docstring stays as is."""
    try:
        docs = field_docs(cls)
    except (OSError, TypeError):
        return cls
    lines = [inspect.cleandoc(cls.__doc__ or ""), "", "Fields:"]
    for field in dataclasses.fields(cls):
        factory = field.default_factory
        default = (repr(field.default) if factory is dataclasses.MISSING
                   else f"{getattr(factory, '__name__', 'factory')}()")
        lines.append(f"    {field.name}: {field.type} = {default}")
        lines += textwrap.wrap(docs.get(field.name, ""), 88, initial_indent=" " * 8,
                               subsequent_indent=" " * 8)
    cls.__doc__ = "\n".join(lines).lstrip("\n")
    return cls
