"""MonoBeast on CartPole-v1: throughput against a same-run single-core limit, and time to solve.

Prints, all measured in this run:
  (a) the single-core limit: one process stepping 64 envs with batched inference of the same
      MLP and one learner step per unroll (no queues, no processes);
  (b) MonoBeast steps/s with learning (actor processes + learner), and (b)/(a);
  (c) wall time from launch to a mean-100 training return >= 475, over several seeds;
  (0) each component's one-core bound and the tightest bound of MonoBeast's process layout;
  (d) start-up (launch -> first learner step) and shutdown (final row -> exit).

    python bench/mono_cartpole.py [--seeds 3] [--modes parallel serial]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import torch

from beast.acting import UnrollWorker, initial_carry, policy_step
from beast.config import Config, EnvConfig, RunConfig
from beast.envs import make_vector_env
from beast.learner import Learner
from beast.models import build_model
from beast.objectives import build_objective
from beast.rollout import RolloutSpec

MODE_FLAGS = {"parallel": ["--num-actors", "1"], "serial": ["--num-actors", "0"]}


def single_core_limit(seconds: float) -> float:
    """Steps/s of one process: step 64 envs, batched inference, one learner step per unroll."""
    torch.set_num_threads(1)
    config = Config(env=EnvConfig(num_envs=64), run=RunConfig(num_actors=0))
    envs = make_vector_env(config.env.env, config.env.num_envs)
    model = build_model(envs.single_observation_space, envs.single_action_space, config.model)
    learner = Learner(model, build_objective(config.loss, model), config.optim,
                      total_steps=10**9)
    worker = UnrollWorker(envs, model, config.run.unroll_length, seed=0)
    slot = RolloutSpec.build(envs.single_observation_space, model
                             ).allocate((config.run.unroll_length + 1, config.env.num_envs))
    batch = {k: torch.from_numpy(v) for k, v in slot.items()}
    for _ in range(5):  # warm up
        worker.fill(slot, learner.version)
        learner.step(batch, 0)
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        worker.fill(slot, learner.version)
        learner.step(batch, steps)
        steps += config.steps_per_unroll
    return steps / (time.perf_counter() - start)


def _timed(step: Callable[[], int], seconds: float) -> float:
    """Units per second of `step()` (which returns the units it did) over about `seconds`."""
    for _ in range(3):
        step()
    start, units = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        units += step()
    return units / (time.perf_counter() - start)


def component_bounds(seconds: float) -> dict[str, float]:
    """Env steps/s that each component alone sustains on one core, for the default recipe:
    the vector env with random actions, batched inference, the actor's whole unroll (env +
    inference + writing), and the learner step (samples per second)."""
    torch.set_num_threads(1)
    config = Config(env=EnvConfig(num_envs=64), run=RunConfig(num_actors=0))
    k, t = config.env.num_envs, config.run.unroll_length
    envs = make_vector_env(config.env.env, k)
    model = build_model(envs.single_observation_space, envs.single_action_space, config.model)
    learner = Learner(model, build_objective(config.loss, model), config.optim,
                      total_steps=10**9)
    envs.reset(seed=0)
    actions = envs.action_space.sample()
    obs = torch.zeros((k, *envs.single_observation_space.shape))
    generator = torch.Generator().manual_seed(0)
    done = torch.zeros(k, dtype=torch.bool)
    carry = initial_carry(model, k)
    worker = UnrollWorker(envs, model, t, seed=0)
    slot = RolloutSpec.build(envs.single_observation_space, model).allocate((t + 1, k))
    batch = {key: torch.from_numpy(v) for key, v in slot.items()}
    worker.fill(slot, 0)

    def env_step() -> int:
        envs.step(actions)
        return k

    def inference() -> int:
        policy_step(model, obs, carry, done, generator, 0)
        return k

    def unroll() -> int:
        worker.fill(slot, learner.version)
        return k * t

    def learn() -> int:
        learner.step(batch, 0)
        return k * t

    return {"env alone": _timed(env_step, seconds), "inference batch": _timed(inference, seconds),
            "actor unroll": _timed(unroll, seconds), "learner step": _timed(learn, seconds)}


def startup_and_shutdown(flags: list[str], run_dir: Path, module: str = "beast.mono"
                         ) -> tuple[float, float]:
    """(launch -> first learner step, final progress row -> exit) in seconds. The first
    checkpoint is written right after the first learner step, so its appearance marks it; the
    final row is written once the actors have stopped, so the second figure covers the final
    checkpoint and the exit, not the actors' stop."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", module, *flags, "--savedir",
                                str(run_dir.parent), "--run-name", run_dir.name],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last_row = [start]

    def read_stderr() -> None:  # progress rows, timed as they arrive
        for line in process.stderr:
            if line.startswith("[beast] steps"):
                last_row[0] = time.perf_counter()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    first_step = float("nan")
    while process.poll() is None:
        if (run_dir / "checkpoint.pt").exists():
            first_step = time.perf_counter() - start
            break
        time.sleep(0.005)
    process.wait()
    exited = time.perf_counter()
    reader.join()
    return first_step, exited - last_row[0]


def read_rows(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "logs.csv").open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]


def run_mono(flags: list[str], run_dir: Path, module: str = "beast.mono"
             ) -> tuple[float, list[dict[str, float]], str]:
    """Launch `python -m MODULE` (a Beast runtime); return wall seconds from launch to exit,
    the log rows and stderr."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", module, *flags, "--savedir",
                             str(run_dir.parent), "--run-name", run_dir.name],
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{module} failed:\n{result.stderr[-3000:]}")
    return elapsed, read_rows(run_dir), result.stderr


def median_solve_time(label: str, module: str, flags: list[str], seeds: int, tmp: Path) -> float:
    """Wall time from launch to a mean-100 return >= 475 for each seed (the default recipe and
    its 1M-step budget); prints each run and returns the median (inf for unsolved runs)."""
    times = []
    for seed in range(seeds):
        elapsed, rows, stderr = run_mono(
            [*flags, "--target-return", "475", "--seed", str(seed), "--log-seconds", "1"],
            tmp / f"solve-{label}-{seed}", module)
        solved = ">= 475" in stderr
        times.append(elapsed if solved else float("inf"))
        print(f"(c) {label:8s} seed {seed}: {'solved' if solved else 'NOT solved'} in "
              f"{elapsed:.1f} s wall from launch, {rows[-1]['env_steps']:,.0f} steps")
    median = statistics.median(times)
    solved = sum(t != float("inf") for t in times)
    print(f"(c) {label:8s} solved within the classic recipe's own 1M-step budget in {solved} "
          f"of {seeds} seeds; median wall time to mean-100 return >= 475: {median:.1f} s")
    return median


def training_sps(rows: list[dict[str, float]]) -> float:
    """Steps/s between the first and last log rows (startup excluded)."""
    first, last = rows[0], rows[-1]
    return (last["env_steps"] - first["env_steps"]) / (last["wall_time"] - first["wall_time"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit-seconds", type=float, default=10.0)
    parser.add_argument("--sps-steps", type=int, default=3_000_000)
    parser.add_argument("--modes", nargs="+", default=["parallel", "serial"],
                        choices=list(MODE_FLAGS))
    args = parser.parse_args()

    bounds = component_bounds(args.limit_seconds / 2)
    for name, value in bounds.items():
        print(f"(0) one-core bound, {name:15s}: {value:,.0f} env steps/s")
    # MonoBeast's layout: actor processes (one core each) beside the learner (the rest)
    layout = min(bounds["actor unroll"], bounds["learner step"])
    bottleneck = "learner step" if bounds["learner step"] <= bounds["actor unroll"] else \
        "actor unroll"
    print(f"(0) tightest bound for 1 actor + learner on 2 cores: {layout:,.0f} env steps/s "
          f"(the {bottleneck})")
    # serial mode runs the unroll and the learner step one after the other on one core
    serial = 1 / (1 / bounds["actor unroll"] + 1 / bounds["learner step"])
    print(f"(0) tightest bound for serial mode (unroll, then learner step): {serial:,.0f}")
    layout_bound = {"parallel": layout, "serial": serial}
    limit = single_core_limit(args.limit_seconds)
    print(f"(a) single-core limit (64 envs, batched inference, learner step per unroll): "
          f"{limit:,.0f} steps/s")
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            _, rows, _ = run_mono([*MODE_FLAGS[mode], "--total-steps", str(args.sps_steps),
                                   "--log-seconds", "1"], Path(tmp) / f"sps-{mode}")
            sps = training_sps(rows)
            print(f"(b) MonoBeast {mode:8s} steps/s with learning: {sps:,.0f}  "
                  f"(b)/(a) = {sps / limit:.2f}, fraction of the layout's bound "
                  f"{sps / layout_bound[mode]:.2f}")
            startup, shutdown = startup_and_shutdown(
                [*MODE_FLAGS[mode], "--total-steps", "200000"], Path(tmp) / f"start-{mode}")
            print(f"(d) MonoBeast {mode:8s} launch -> first learner step {startup:.2f} s; "
                  f"final row -> exit {shutdown:.2f} s")
        for mode in args.modes:
            median_solve_time(mode, "beast.mono", MODE_FLAGS[mode], args.seeds, Path(tmp))


if __name__ == "__main__":
    main()
