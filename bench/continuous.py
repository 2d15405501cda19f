"""IMPALA with the Gaussian head on Pendulum-v1, in both runtimes, several seeds.

Prints, measured in this run: the random policy's mean return (the baseline, ~ -1200), then
for each runtime and seed the mean-100 training return at the budget and the first env step
where it reached the target (-400), and how many seeds did. Writes every curve to
bench/out/continuous/curves.csv and curves.png.

    python bench/continuous.py [--seeds 3] [--steps 3e6] [--runtimes mono poly] [-- beast flags]

The recipe (RECIPE below) is the one the closing note of the Core v2 issue reports.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mono_cartpole import run_mono  # noqa: E402  (same folder's helpers)

RECIPE = ["--env", "Pendulum-v1", "--num-envs", "16", "--unroll-length", "16",
          "--reward-scale", "0.1", "--discount", "0.95", "--entropy-cost", "0",
          "--learning-rate", "1e-3", "--epsilon", "1e-5", "--hidden-sizes", "64", "64"]
TARGET = -400.0


def random_policy_return(episodes: int = 100, seed: int = 0) -> float:
    env = gym.make("Pendulum-v1")
    env.action_space.seed(seed)
    returns = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=float, default=3e6)
    parser.add_argument("--runtimes", nargs="+", default=["mono", "poly"])
    parser.add_argument("--out", type=Path, default=Path("bench/out/continuous"))
    parser.add_argument("flags", nargs="*", help="extra beast flags (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"random policy, mean return over 100 episodes: {random_policy_return():.1f}")
    print("recipe:", " ".join(RECIPE + args.flags))
    curves: dict[tuple[str, int], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for runtime in args.runtimes:
            reached = 0
            for seed in range(args.seeds):
                elapsed, rows, _ = run_mono(
                    [*RECIPE, *args.flags, "--total-steps", str(int(args.steps)),
                     "--seed", str(seed), "--log-seconds", "5"],
                    Path(tmp) / f"{runtime}-{seed}", f"beast.{runtime}")
                points = [(r["env_steps"], r["mean_return"]) for r in rows if "mean_return" in r]
                curves[(runtime, seed)] = points
                first = next((s for s, ret in points if ret >= TARGET), None)
                reached += first is not None
                print(f"{runtime} seed {seed}: mean-100 return {points[-1][1]:.1f} at "
                      f"{points[-1][0]:,.0f} steps ({elapsed:.0f} s); >= {TARGET:.0f} first at "
                      f"{'never' if first is None else f'{first:,.0f} steps'}")
            print(f"{runtime}: {reached} of {args.seeds} seeds reached {TARGET:.0f}")
    with (args.out / "curves.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["runtime", "seed", "env_steps", "mean_return"])
        for (runtime, seed), points in curves.items():
            writer.writerows([runtime, seed, s, r] for s, r in points)
    fig, ax = plt.subplots(figsize=(7, 4))
    for (runtime, seed), points in curves.items():
        ax.plot([s for s, _ in points], [r for _, r in points],
                color="C0" if runtime == "mono" else "C1", alpha=0.8,
                label=f"{runtime}" if seed == 0 else None)
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return (last 100 episodes)")
    ax.set_title("IMPALA, Gaussian policy, Pendulum-v1")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=120)
    print(f"curves: {args.out / 'curves.csv'}, {args.out / 'curves.png'}")


if __name__ == "__main__":
    sys.exit(main())
