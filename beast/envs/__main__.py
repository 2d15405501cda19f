"""`python -m beast.envs [PATTERN] [--backend envpool]`: list the env ids Beast can make here.

One id per line on stdout, followed by the recipe a run of it starts from (beast.recipes), so it
pipes into grep; notes about missing optional packages go to stderr. The Gymnasium list is the registered ids, the MinAtar ids and the `ALE/...` Atari ids
(ale-py's legacy v0/v4 ids also work but are left out to keep the list short).
"""

from __future__ import annotations

import argparse
import sys
import warnings

import gymnasium as gym

from beast.envs import atari, minatar
from beast.envs import envpool as envpool_backend
from beast.envs.make import BACKENDS, INSTALL_COMMANDS
from beast.recipes import recipe_for


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def gymnasium_ids() -> list[str]:
    """Registered Gymnasium ids plus the MinAtar and ALE ids whose packages are installed."""
    try:
        minatar.register_minatar()
    except ImportError:
        _note(f"MinAtar ids: minatar is not installed ({INSTALL_COMMANDS['minatar']})")
    if not atari.try_register_atari():
        _note(f"Atari ids: ale-py is not installed ({INSTALL_COMMANDS['atari']})")
    return sorted(env_id for env_id in gym.registry
                  if env_id.startswith("ALE/") or not atari.is_atari(env_id))


def envpool_ids() -> list[str]:
    """envpool's task ids (an Atari task also answers to its `ALE/` name)."""
    try:
        return sorted(envpool_backend.list_tasks())
    except ImportError:
        _note(f"envpool is not installed ({INSTALL_COMMANDS['envpool']})")
        return []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m beast.envs",
                                     description="List the environment ids Beast can make.")
    parser.add_argument("pattern", nargs="?", default="",
                        help="only ids containing this text (case-insensitive)")
    parser.add_argument("--backend", choices=BACKENDS, default="gymnasium")
    args = parser.parse_args(argv)
    ids = envpool_ids() if args.backend == "envpool" else gymnasium_ids()
    pattern = args.pattern.lower()
    width = max((len(i) for i in ids), default=0)
    for env_id in ids:
        if pattern in env_id.lower():
            print(f"{env_id:<{width}}  recipe: {_recipe(env_id, args.backend)}", flush=True)


def _recipe(env_id: str, backend: str) -> str:
    with warnings.catch_warnings():  # some registered ids warn when made (deprecations)
        warnings.simplefilter("ignore")
        try:
            return recipe_for(env_id, backend)
        except Exception:  # an id that cannot even be resolved here
            return "classic"


if __name__ == "__main__":
    main()
