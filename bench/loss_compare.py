"""IMPALA, IMPACT and V-MPO on the same env-step budget, several seeds, several env families.

For each env and loss it runs MonoBeast once per seed and writes, under --out:
  curves.csv   env, loss, seed, env_steps, wall_time, mean_return (every log row)
  <env>.png    mean-100 return against env steps and against wall time, one colour per loss
  summary.md   the table below, also printed

Summary columns, over the seeds: median (min..max) of the final mean-100 return; its spread
(max - min, the seed sensitivity); median wall time; and, for IMPACT and V-MPO, the median
wall time at which a run first reached IMPALA's median final return in this same run (the
comparison behind IMPACT's claim: IMPALA's result in less wall time), with how many seeds did.

    python bench/loss_compare.py [--envs cartpole pendulum minatar halfcheetah] [--seeds 3]
                                 [--losses impala impact vmpo] [--budget-scale 1.0]

Each env has one recipe for every loss (TASKS); where one loss is tuned apart on an env
(only V-MPO's learning rate on Pendulum) TASKS says so.

HalfCheetah runs only when the [mujoco] extra is installed; MinAtar needs minatar.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mono_cartpole import run_mono  # noqa: E402  (same folder's helpers)


@dataclass(frozen=True)
class Task:
    env: str
    steps: float
    flags: tuple[str, ...]
    needs: str | None = None
    """Module that must be importable (an optional extra), or None."""
    per_loss: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(loss, flags) pairs: one loss's own tuning on this env, appended after `flags`."""

    def flags_for(self, loss: str) -> tuple[str, ...]:
        return self.flags + dict(self.per_loss).get(loss, ())


PENDULUM = ("--num-envs", "16", "--unroll-length", "16", "--reward-scale", "0.1",
            "--discount", "0.95", "--entropy-cost", "0", "--learning-rate", "1e-3",
            "--epsilon", "1e-5", "--hidden-sizes", "64", "64")  # bench/continuous.py's recipe
TASKS = {
    # 16 envs x T = 16: V-MPO moves pi_old every 100 learner steps, so it needs many small
    # batches (with 64 x 32 it gets ~500 learner steps in 1M env steps); the others learn too.
    "cartpole": Task("CartPole-v1", 1e6, ("--num-envs", "16", "--unroll-length", "16")),
    "pendulum": Task("Pendulum-v1", 3e6, PENDULUM,
                     per_loss=(("vmpo", ("--learning-rate", "3e-3")),)),  # README's recipe
    "minatar": Task("MinAtar/Breakout-v1", 2e6, ("--num-envs", "32", "--unroll-length", "20"),
                    needs="minatar"),
    "halfcheetah": Task("HalfCheetah-v5", 1e6, ("--num-envs", "16", "--unroll-length", "32",
                                                "--reward-scale", "0.1", "--entropy-cost", "0",
                                                "--learning-rate", "3e-4", "--epsilon", "1e-5",
                                                "--hidden-sizes", "256", "256"), needs="mujoco"),
}
LOSS_FLAGS = {"impala": ("--loss", "impala"), "impact": ("--loss", "impact"),
              "vmpo": ("--loss", "vmpo")}


def first_time_at(rows: list[dict[str, float]], level: float) -> float | None:
    """Wall time of the first log row whose mean-100 return is >= level."""
    return next((r["wall_time"] for r in rows if r.get("mean_return", -1e18) >= level), None)


def summarise(env: str, runs: dict[str, list[list[dict[str, float]]]]) -> list[str]:
    finals = {loss: [rows[-1]["mean_return"] for rows in seeds] for loss, seeds in runs.items()}
    reference = statistics.median(finals["impala"]) if "impala" in finals else None
    lines = []
    for loss, seeds in runs.items():
        final, walls = finals[loss], [rows[-1]["wall_time"] for rows in seeds]
        cell = (f"| {env} | {loss} | {statistics.median(final):.1f} ({min(final):.1f}.."
                f"{max(final):.1f}) | {max(final) - min(final):.1f} | "
                f"{statistics.median(walls):.0f} s |")
        if reference is not None and loss != "impala":
            times = [t for t in (first_time_at(rows, reference) for rows in seeds) if t is not None]
            cell += (f" {statistics.median(times):.0f} s ({len(times)}/{len(seeds)}) |" if times
                     else f" never (0/{len(seeds)}) |")
        else:
            cell += " - |"
        lines.append(cell)
    return lines


def plot(env: str, runs: dict[str, list[list[dict[str, float]]]], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for colour, (loss, seeds) in zip(("C0", "C1", "C2"), runs.items()):
        for i, rows in enumerate(seeds):
            pts = [r for r in rows if "mean_return" in r]
            for ax, x in zip(axes, ("env_steps", "wall_time")):
                ax.plot([r[x] for r in pts], [r["mean_return"] for r in pts], colour, alpha=0.7,
                        label=loss if i == 0 else None)
    for ax, label in zip(axes, ("env steps", "wall time (s)")):
        ax.set_xlabel(label)
        ax.set_ylabel("mean-100 return")
        ax.legend()
    fig.suptitle(env)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--losses", nargs="+", choices=sorted(LOSS_FLAGS),
                        default=["impala", "impact", "vmpo"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget-scale", type=float, default=1.0,
                        help="multiply every env's step budget (e.g. 0.1 for a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/loss_compare"))
    parser.add_argument("flags", nargs="*", help="extra beast flags for every run (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    table = ["| env | loss | final mean-100 return, median (min..max) | seed spread | "
             "wall time | time to IMPALA's final (seeds) |", "|---|---|---|---|---|---|"]
    with (args.out / "curves.csv").open("w", newline="") as curves, \
            tempfile.TemporaryDirectory() as tmp:
        writer = csv.writer(curves)
        writer.writerow(["env", "loss", "seed", "env_steps", "wall_time", "mean_return"])
        for name in args.envs:
            task = TASKS[name]
            if task.needs and importlib.util.find_spec(task.needs) is None:
                print(f"{name}: skipped ({task.needs} is not installed)", file=sys.stderr)
                continue
            runs: dict[str, list[list[dict[str, float]]]] = {}
            for loss in args.losses:
                for seed in range(args.seeds):
                    flags = ["--env", task.env, "--total-steps",
                             str(int(task.steps * args.budget_scale)), "--seed", str(seed),
                             "--log-seconds", "2", *task.flags_for(loss), *LOSS_FLAGS[loss],
                             *args.flags]
                    elapsed, rows, _ = run_mono(flags, Path(tmp) / f"{name}-{loss}-{seed}")
                    rows = [r for r in rows if "mean_return" in r]
                    runs.setdefault(loss, []).append(rows)
                    for r in rows:
                        writer.writerow([task.env, loss, seed, int(r["env_steps"]),
                                         f"{r['wall_time']:.2f}", f"{r['mean_return']:.2f}"])
                    print(f"{name} {loss} seed {seed}: final {rows[-1]['mean_return']:.1f} at "
                          f"{rows[-1]['env_steps']:,.0f} steps, {elapsed:.0f} s", flush=True)
            plot(task.env, runs, args.out / f"{name}.png")
            table += summarise(task.env, runs)
    (args.out / "summary.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
