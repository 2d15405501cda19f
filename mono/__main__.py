"""`python -m beast.mono`: train, resume (`--resume RUN_DIR`) or evaluate (`--eval RUN_DIR`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from beast.config import Config, ConfigError, build_parser, config_from_args
from beast.envs import UnknownEnvError, resolve_env_id

DESCRIPTION = ("MonoBeast: IMPALA on one machine. Actor processes step batches of Gymnasium "
               "envs into shared memory; the learner trains with V-trace.")


def parse(argv: list[str] | None) -> tuple[Config, str | None, str | None]:
    parser = build_parser("beast.mono", DESCRIPTION)
    modes = parser.add_argument_group("modes")
    modes.add_argument("--resume", metavar="RUN_DIR",
                       help="continue a run from its checkpoint (flags given override its config)")
    modes.add_argument("--eval", metavar="RUN_DIR",
                       help="play --eval-episodes episodes with a run's checkpoint; print the mean")
    args = parser.parse_args(argv)
    resume, evaluate = getattr(args, "resume", None), getattr(args, "eval", None)
    if resume and evaluate:
        parser.error("--resume and --eval are exclusive")
    base = None
    saved = resume or evaluate
    try:
        if saved:
            config_path = Path(saved) / "config.json"
            if not config_path.is_file():
                parser.error(f"{saved} is not a run directory (no config.json)")
            base = Config.from_dict(json.loads(config_path.read_text()))
        config = config_from_args(args, base)
        resolve_env_id(config.env.env)
    except (ConfigError, UnknownEnvError) as exc:
        parser.error(str(exc))
    return config, resume, evaluate


def main(argv: list[str] | None = None) -> int:
    config, resume, evaluate_dir = parse(argv)
    if evaluate_dir:
        from beast.mono.evaluate import evaluate

        returns = evaluate(evaluate_dir, config.run.eval_episodes)
        print(f"mean return over {len(returns)} episodes: {sum(returns) / len(returns):.2f}")
        return 0
    if config.run.num_actors > 0:
        from beast.mono.runtime import forkserver_context

        forkserver_context()  # start it now: its imports overlap ours
    import torch

    from beast.mono.sources import ProcessSource, SerialSource
    from beast.training import prepare_run_dir, run_training

    try:
        run_dir = prepare_run_dir(config, resume=bool(resume), run_dir=resume)
    except FileExistsError as exc:
        print(f"beast.mono: error: {exc}", file=sys.stderr)
        return 2
    print(f"[beast] run directory: {run_dir}", file=sys.stderr)
    if config.run.num_actors > 0:
        # Each actor runs one thread; the learner gets the cores they leave. Oversubscribing
        # (torch's default: all cores) costs more than a third of the throughput on 2 cores.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - config.run.num_actors))

    def make_source(model, observation_space, action_space, generation, log):
        if config.run.num_actors == 0:
            return SerialSource(config, model, observation_space, action_space, generation)
        return ProcessSource(config, model, observation_space, action_space, generation, log)

    return run_training(config, run_dir, make_source, resume=bool(resume))


if __name__ == "__main__":
    sys.exit(main())
