"""`python -m beast.poly` / `polybeast`: train, resume or evaluate with PolyBeast.

Same flags, run directories, logs, checkpoints and `--resume` / `--eval` as MonoBeast, plus
--num-servers (local env server processes to start) or --server-addresses (existing ones).
--num-actors is the number of actor connections (C++ threads), spread over the servers.
With --actors remote, --num-actors is the number of remote actor processes instead (each with
--num-envs envs and its own policy copy; beast.poly.remote_source), started here or, with
--ray-address, placed on the Ray cluster; and no env server runs.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

from beast.cli import run_cli
from beast.config import Config

DESCRIPTION = ("PolyBeast: IMPALA with environments in env server processes, a C++ actor pool "
               "and central batched inference; the learner trains with --loss impala, impact or "
               "vmpo.")


def make_source(config: Config) -> Callable[..., Any]:
    import torch

    from beast.poly.sources import PolySource

    # Env servers, actor threads and inference share the cores with the learner: one thread
    # per torch call avoids oversubscribing a small machine.
    torch.set_num_threads(1)

    def factory(model, observation_space, action_space, generation, log):
        if config.poly.actors == "remote":
            from beast.poly.remote_source import RemoteSource

            return RemoteSource(config, model, observation_space, generation, log)
        return PolySource(config, model, observation_space, action_space, generation, log)

    return factory


def check_servers(config: Config) -> None:
    """Env servers given with --server-addresses must answer now, and with --actors remote the
    learner's address must be one it can accept actors on (a one-line error if not)."""
    if config.poly.actors == "remote":
        # Ray-placed actors get a fresh token if the variable has none (remote_source.py).
        check_actor_address(config.poly.actor_address, fresh_token=bool(config.poly.ray_address))
        return
    if not config.poly.server_addresses:
        return
    from beast.poly._core import EnvClient

    for address in config.poly.server_addresses:
        try:
            EnvClient(address, 5.0).close()
        except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
            reason = " ".join(str(exc).split())
            raise ValueError(f"cannot reach env server {address}: {reason}") from exc


def check_actor_address(address: str, fresh_token: bool = False) -> None:
    """Bind `address` once, as the run will (a taken port, an unknown host, a non-loopback
    address without $BEAST_AUTH_TOKEN unless the run makes a `fresh_token`), before anything
    starts."""
    import os
    import secrets

    import numpy as np

    from beast.poly._core import ActorServer, BatchingQueue
    from beast.poly.env_server import AUTH_TOKEN_ENV

    try:
        ActorServer(address, {"probe": (np.float32, [])}, 1, 1, 1, max_actors=1,
                    queue=BatchingQueue(1), auth_token=os.environ.get(AUTH_TOKEN_ENV)
                    or (secrets.token_hex(16) if fresh_token else None)).close()
    except (OSError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise ValueError(f"cannot accept remote actors on {address}: {reason}") from exc


def main(argv: list[str] | None = None) -> int:
    return run_cli("beast.poly", DESCRIPTION, make_source, argv, skip=("mono",),
                   check=check_servers)


if __name__ == "__main__":
    sys.exit(main())
