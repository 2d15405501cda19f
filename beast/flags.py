"""The command line, built from the config dataclasses (beast.config): one flag per field,
its help the field's docstring, grouped by component.

    parser = build_parser(prog="beast.mono")        # flags for every field, defaults suppressed
    args = parser.parse_args(argv)                  # only flags the user typed appear
    config = config_from_args(args, base=None)      # defaults (or a saved run) + typed flags
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any, get_args, get_origin, get_type_hints

from beast._validate import field_docs
from beast.config import _GROUPS, Config, EnvConfig, RunConfig
from beast.recipes import RECIPES, apply_recipe, recipe_for


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump) and exit with status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _integer(text: str) -> int:
    """Parse an integer flag, accepting scientific notation such as 1e6 for step budgets."""
    value = float(text)
    if not value.is_integer():
        raise ValueError(text)
    return int(value)


_integer.__name__ = "int"  # argparse names the type in its error message


def _finite_float(text: str) -> float:
    """Parse a float flag; inf and nan are refused (an inf learning rate trains to NaN)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


_finite_float.__name__ = "finite float"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_field(group: argparse._ArgumentGroup, field: dataclasses.Field, hint: Any, doc: str,
               default: Any) -> None:
    help_text = f"{doc} (default: {default})"
    if get_origin(hint) is tuple:
        item = get_args(hint)[0]
        group.add_argument(_flag(field.name), type=_integer if item is int else item, nargs="+",
                           help=help_text)
        return
    if hint is bool:
        group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction,
                           help=help_text)
        return
    args = [a for a in get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    parse = {int: _integer, float: _finite_float}.get(base, base)
    group.add_argument(_flag(field.name), type=parse, help=help_text)


_GROUP_TITLES = {
    "env": "environment", "model": "model", "loss": "objective and loss (every --loss)",
    "impact": "IMPACT (--loss impact; ignored otherwise)",
    "vmpo": "V-MPO (--loss vmpo; ignored otherwise)", "optim": "optimiser",
    "run": "run control", "mono": "MonoBeast runtime", "eval": "evaluation (--eval, --eval-every)",
    "sync": "weight synchronisation", "poly": "PolyBeast runtime",
    "memory": "episodic memory (--episodic-memory; ignored otherwise)",
}


def build_parser(prog: str, description: str = "", skip: tuple[str, ...] = (),
                 only: tuple[str, ...] | None = None) -> OneLineErrorParser:
    """An argparse parser with one flag per config field, grouped by component (groups in
    `skip` left out, e.g. the poly group for MonoBeast; `only` keeps just those groups);
    defaults are suppressed so that `config_from_args` can tell typed flags from defaults
    (needed to override a resumed run). Abbreviations are off: `--lr` is not `--lr-decay`."""
    parser = OneLineErrorParser(prog=prog, description=description, allow_abbrev=False,
                                argument_default=argparse.SUPPRESS)
    for group_name, cls in _GROUPS.items():
        if group_name in skip or (only is not None and group_name not in only):
            continue
        group = parser.add_argument_group(_GROUP_TITLES[group_name])
        hints = get_type_hints(cls)
        docs = field_docs(cls)
        defaults = cls()
        for field in dataclasses.fields(cls):
            _add_field(group, field, hints[field.name], docs.get(field.name, ""),
                       getattr(defaults, field.name))
    return parser


def group_flags(group: Any) -> list[str]:
    """Command-line flags that rebuild this config group exactly (e.g. a launcher passing its
    EnvConfig to an env server process, whose parser is `build_parser(only=("env",))`)."""
    flags: list[str] = []
    for field in dataclasses.fields(group):
        value = getattr(group, field.name)
        if value is None:
            continue
        if isinstance(value, bool):
            flags.append(_flag(field.name) if value else "--no-" + _flag(field.name)[2:])
        elif isinstance(value, tuple):
            if value:
                flags += [_flag(field.name), *map(str, value)]
        else:
            flags += [_flag(field.name), str(value)]
    return flags


def group_from_args(cls: type, args: argparse.Namespace) -> Any:
    """One config group from the flags of a `build_parser(only=...)` parser; validates."""
    given = vars(args)
    return cls(**{f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """`base` updated with the flags present in `args`; validates. Without a base (a new run),
    the defaults with the run's recipe applied (beast.recipes: --recipe, or chosen from the
    env id) are the base."""
    given = vars(args)
    data = (base or Config()).to_dict()
    if base is None:
        recipe = given.get("recipe", RunConfig.recipe)
        if recipe == "auto":
            recipe = recipe_for(given.get("env", EnvConfig.env),
                                given.get("env_backend", EnvConfig.env_backend))
        if recipe in RECIPES:  # an unknown name is left for RunConfig to refuse
            data = apply_recipe(data, recipe)
            given = {k: v for k, v in given.items() if k != "recipe"}
    for group_name, cls in _GROUPS.items():
        for field in dataclasses.fields(cls):
            if field.name in given:
                data[group_name][field.name] = given[field.name]
    return Config.from_dict(data)
