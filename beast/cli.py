"""The command line both launchers share: train, `--resume RUN_DIR`, `--eval RUN_DIR`.

A runtime's `__main__` supplies only what differs — how to build its batch source, which
config groups it has flags for, and its own config rules:

    sys.exit(run_cli("beast.mono", DESCRIPTION, make_source, argv, skip=("poly",), check=check_mono))

Heavy imports (torch) happen after parsing, so a bad flag fails in a fraction of a second.
Every user error (a bad flag, an env or space Beast cannot take, a missing extra) is one
line and exit code 2, before anything is written; a run that fails before its first learner
step removes the run directory it created.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from beast.config import Config
from beast.flags import build_parser, config_from_args
from beast.envs.make import check_env_config
from beast.wandb_log import check_wandb_installed

# The episodic-memory fields that size its checkpointed state (beast.memory): fixed on --resume.
MEMORY_SHAPE = ("episodic_memory", "memory_key_size", "memory_capacity", "memory_buffer_size",
                "memory_value")

# make_source(config) -> the factory run_training calls (model, spaces, generation, log)
SourceFactory = Callable[[Config], Callable[..., Any]]


def parse(prog: str, description: str, argv: list[str] | None, skip: tuple[str, ...] = (),
          check: Callable[[Config], None] | None = None
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
        if saved and hasattr(args, "recipe"):
            parser.error("--recipe applies to new runs: a resumed or evaluated run keeps the "
                         "config it was trained with")
        if saved:
            config_path = Path(saved) / "config.json"
            if not config_path.is_file():
                parser.error(f"{saved} is not a run directory (no config.json)")
            base = Config.from_dict(json.loads(config_path.read_text()))
        config = config_from_args(args, base)
        if resume and config.loss.loss != base.loss.loss:
            parser.error(f"--loss cannot change on --resume: {resume} was trained with --loss "
                         f"{base.loss.loss}, and its checkpoint holds that objective's state")
        if resume:
            changed = [f"--{name.replace('_', '-')}" for name in MEMORY_SHAPE
                       if getattr(config.memory, name) != getattr(base.memory, name)]
            if changed:
                parser.error(f"{', '.join(changed)} cannot change on --resume: {resume}'s "
                             "checkpoint holds a memory of the trained sizes")
        check_env_config(config.env)
        if config.run.wandb and not evaluate:
            check_wandb_installed()
        if check is not None:
            check(config)
    except (ValueError, TypeError) as exc:  # ConfigError, UnknownEnvError, an old config.json
        parser.error(str(exc))
    return config, resume, evaluate


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def _zipf_accuracies(run_dir: str, config: Config) -> int:
    """On a ZipfGridworld run, --eval also prints its three accuracies (beast.evaluate_zipf)."""
    from beast.evaluate import saved_config
    from beast.evaluate_zipf import is_zipf_gridworld, zipf_accuracies

    if config.eval.video or not is_zipf_gridworld(saved_config(run_dir).env.env):
        return 0
    accuracies = zipf_accuracies(run_dir, config)
    print("accuracy (95% intervals): " + ", ".join(map(str, accuracies)))
    return 0


def run_cli(prog: str, description: str, make_source: SourceFactory,
            argv: list[str] | None = None, skip: tuple[str, ...] = (),
            check: Callable[[Config], None] | None = None) -> int:
    """Parse, then evaluate or train (fresh or resumed); returns the process exit code.
    Config groups in `skip` get no flags (e.g. MonoBeast skips the poly group); `check` is
    the runtime's own cross-group validation."""
    config, resume, evaluate_dir = parse(prog, description, argv, skip, check)
    from beast.checkpoint import CheckpointError, load_checkpoint

    if evaluate_dir:
        from beast.evaluate import VideoError, evaluate

        try:
            stats = evaluate(evaluate_dir, config)
        except (CheckpointError, VideoError) as exc:
            return _fail(prog, str(exc))
        metrics = stats.metrics()
        policy = "greedy" if config.eval.eval_greedy else "sampled"
        print(f"mean return over {len(stats.returns)} episodes: "
              f"{metrics['eval/return_mean']:.2f} (std {metrics['eval/return_std']:.2f}, mean "
              f"length {metrics['eval/length_mean']:.1f}; {policy} policy, "
              f"{config.eval.checkpoint} checkpoint)")
        if config.eval.video:
            print(f"videos: {Path(evaluate_dir) / 'videos'}")
        return _zipf_accuracies(evaluate_dir, config)
    if config.eval.video:
        return _fail(prog, "--video records the episodes of --eval RUN_DIR; while training, "
                           "use --eval-every with --eval-video-every")
    if config.eval.eval_video_every is not None:
        from beast.evaluate import VideoError, check_video_support

        try:
            check_video_support(config)
        except VideoError as exc:
            return _fail(prog, str(exc))
    from beast.training import build_env_model, prepare_run_dir, run_training

    state = None
    if resume:
        try:
            state = load_checkpoint(resume)
        except CheckpointError as exc:
            return _fail(prog, str(exc))

    import torch

    if config.run.device.startswith("cuda") and not torch.cuda.is_available():
        return _fail(prog, f"--device {config.run.device}: CUDA is not available here "
                           "(use --device cpu)")
    try:  # make one env and the model before anything is written
        probe = build_env_model(config)
    except Exception as exc:  # an env that cannot be made here, a space Beast cannot take
        return _fail(prog, f"cannot make {config.env.env}: {exc}".splitlines()[0])
    source_factory = make_source(config)
    try:
        run_dir, created = prepare_run_dir(config, resume=bool(resume), run_dir=resume)
    except (FileExistsError, ValueError, OSError) as exc:
        return _fail(prog, str(exc))
    print(f"[beast] run directory: {run_dir}", file=sys.stderr)
    if not resume:
        print(f"[beast] recipe: {config.run.recipe} (flags override it; --recipe none gives "
              "Beast's bare defaults)", file=sys.stderr)
    code, started = run_training(config, run_dir, source_factory, probe, state)
    if created and not started:
        shutil.rmtree(run_dir, ignore_errors=True)
        print(f"[beast] the run stopped before its first learner step; removed {run_dir}",
              file=sys.stderr)
    return code
