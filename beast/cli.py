"""The command line both launchers share: train, `--resume RUN_DIR`, `--eval RUN_DIR`.

A runtime's `__main__` supplies only what differs — how to build its batch source, and what to
do before training starts:

    sys.exit(run_cli("beast.mono", DESCRIPTION, make_source, argv))

Heavy imports (torch) happen after parsing, so a bad flag fails in a fraction of a second.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from beast.config import Config, build_parser, config_from_args
from beast.envs.make import check_env_config

# make_source(config) -> the factory run_training calls (model, spaces, generation, log)
SourceFactory = Callable[[Config], Callable[..., Any]]


def parse(prog: str, description: str, argv: list[str] | None, skip: tuple[str, ...] = ()
          ) -> tuple[Config, str | None, str | None]:
    """The config (defaults, or a saved run's, updated with typed flags) and the mode."""
    parser = build_parser(prog, description, skip)
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
        check_env_config(config.env)
    except ValueError as exc:  # ConfigError, UnknownEnvError, Atari-only flags elsewhere
        parser.error(str(exc))
    return config, resume, evaluate


def run_cli(prog: str, description: str, make_source: SourceFactory,
            argv: list[str] | None = None, skip: tuple[str, ...] = ()) -> int:
    """Parse, then evaluate or train (fresh or resumed); returns the process exit code.
    Config groups in `skip` get no flags (e.g. MonoBeast skips the poly group)."""
    config, resume, evaluate_dir = parse(prog, description, argv, skip)
    if evaluate_dir:
        from beast.evaluate import evaluate

        returns = evaluate(evaluate_dir, config.run.eval_episodes)
        print(f"mean return over {len(returns)} episodes: {sum(returns) / len(returns):.2f}")
        return 0
    from beast.training import prepare_run_dir, run_training

    source_factory = make_source(config)
    try:
        run_dir = prepare_run_dir(config, resume=bool(resume), run_dir=resume)
    except FileExistsError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"[beast] run directory: {run_dir}", file=sys.stderr)
    return run_training(config, run_dir, source_factory, resume=bool(resume))
