"""`python -m beast.mono`: train, resume (`--resume RUN_DIR`) or evaluate (`--eval RUN_DIR`)."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from beast.cli import run_cli
from beast.config import Config, check_mono

DESCRIPTION = ("MonoBeast: IMPALA on one machine. Actor processes step batches of Gymnasium "
               "envs into shared memory; the learner trains with --loss impala, impact or vmpo.")


def make_source(config: Config) -> Callable[..., Any]:
    """Start the actors' forkserver at once (its imports overlap ours), size the learner's
    thread pool, and return the factory of the serial or parallel batch source."""
    if config.run.num_actors > 0:
        from beast.mono.runtime import forkserver_context

        forkserver_context()
    import torch

    from beast.mono.sources import ProcessSource, SerialSource

    if config.run.num_actors > 0:
        # Each actor runs one thread; the learner gets the cores they leave. Oversubscribing
        # (torch's default: all cores) costs more than a third of the throughput on 2 cores.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - config.run.num_actors))

    def factory(model, observation_space, action_space, generation, log):
        if config.run.num_actors == 0:
            return SerialSource(config, model, observation_space, action_space, generation)
        return ProcessSource(config, model, observation_space, action_space, generation, log)

    return factory


def main(argv: list[str] | None = None) -> int:
    return run_cli("beast.mono", DESCRIPTION, make_source, argv, skip=("poly",), check=check_mono)


if __name__ == "__main__":
    sys.exit(main())
