"""A long CartPole run: does the policy hold once it has solved, and do its numbers stay valid?

Runs MonoBeast on CartPole-v1 for --steps (default 30M, the budget that used to collapse to a
return of 9 with the old recipe) and prints, from its log rows: where the mean-100 return
first reached 475, its minimum and the share of rows >= 450 after that, and the ranges of the
policy entropy (valid: [0, ln 2]) and of the KL(mu || pi) diagnostic (valid: >= 0). With
--baseline it first runs the same budget with the old recipe (the paper's rho-bar_pg = 1 and
Adam's usual lr 2e-3, eps 1e-5) for comparison.

    python bench/long_cartpole.py [--steps 3e7] [--seed 0] [--baseline] [-- extra beast flags]

A faster stress test of the same failure, a constant learning rate for 5M steps (the regime a
long linear-decay budget stays in for millions of steps after CartPole is solved):

    python bench/long_cartpole.py --steps 5e6 --seed 0 -- --lr-decay none
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from mono_cartpole import run_mono  # same folder's helpers

OLD_RECIPE = ["--clip-pg-rho", "1", "--learning-rate", "2e-3", "--epsilon", "1e-5"]


def summarise(label: str, rows: list[dict[str, float]], elapsed: float) -> None:
    points = [r for r in rows if "mean_return" in r and "learner/entropy" in r]
    solved = next((i for i, r in enumerate(points) if r["mean_return"] >= 475), None)
    entropy = [r["learner/entropy"] for r in points]
    kl = [r["learner/kl_mean"] for r in points]
    print(f"{label}: {points[-1]['env_steps']:,.0f} steps in {elapsed:.0f} s; "
          f"final mean-100 return {points[-1]['mean_return']:.1f}")
    if solved is None:
        print(f"{label}: never reached 475")
    else:
        after = [r["mean_return"] for r in points[solved:]]
        print(f"{label}: first >= 475 at {points[solved]['env_steps']:,.0f} steps; after that "
              f"min {min(after):.1f}, median {sorted(after)[len(after) // 2]:.1f}, "
              f"{sum(a >= 450 for a in after) / len(after):.1%} of rows >= 450")
    print(f"{label}: entropy in [{min(entropy):.3g}, {max(entropy):.3g}] (valid [0, "
          f"{math.log(2):.3f}]); KL in [{min(kl):.3g}, {max(kl):.3g}] (valid >= 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=float, default=3e7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true", help="also run the old recipe")
    parser.add_argument("flags", nargs="*", help="extra beast.mono flags (after --)")
    args = parser.parse_args()
    arms = ([("old recipe", OLD_RECIPE)] if args.baseline else []) + [("default", [])]
    with tempfile.TemporaryDirectory() as tmp:
        for label, flags in arms:
            elapsed, rows, _ = run_mono(
                ["--env", "CartPole-v1", "--total-steps", str(int(args.steps)), "--seed",
                 str(args.seed), "--log-seconds", "5", *flags, *args.flags],
                Path(tmp) / label.replace(" ", "-"))
            summarise(label, rows, elapsed)


if __name__ == "__main__":
    main()
