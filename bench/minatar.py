"""MonoBeast on MinAtar Breakout for a fixed step budget: the learning curve, CSV + PNG.

Prints the mean-100 return reached at the budget, the training steps/s and its ratio to the
raw env speed (the same envs stepped with random actions, no model, measured in this run).

    python bench/minatar.py [--steps 2e6] [--env MinAtar/Breakout-v1] [-- extra beast flags]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from env_speed import raw_env_sps  # noqa: E402  (same folder)
from mono_cartpole import run_mono, training_sps  # noqa: E402

# This file is named minatar.py: with its folder on sys.path, `import minatar` would find it
# instead of the MinAtar package. The helpers above are imported; drop the folder now.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

CURVE_KEYS = ("env_steps", "wall_time", "sps", "mean_return", "episodes")


def write_curve(rows: list[dict[str, float]], out: Path, title: str) -> None:
    with (out / "curve.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_KEYS)
        writer.writeheader()
        for row in rows:
            if "mean_return" in row:
                writer.writerow({k: row.get(k, "") for k in CURVE_KEYS})
    points = [(r["env_steps"], r["mean_return"]) for r in rows if "mean_return" in r]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([s for s, _ in points], [r for _, r in points])
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean return (last 100 episodes)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MinAtar/Breakout-v1")
    parser.add_argument("--steps", type=float, default=2e6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench/out/minatar"))
    parser.add_argument("flags", nargs="*", help="extra beast.mono flags (after --)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    num_envs = 64
    raw = raw_env_sps(args.env, num_envs, seconds=3.0)
    print(f"raw env speed, {args.env} x{num_envs}, random actions: {raw:,.0f} steps/s")
    run_dir = args.out / "run"
    if run_dir.exists():
        raise SystemExit(f"{run_dir} exists: remove it or pass another --out")
    elapsed, rows, _ = run_mono(["--env", args.env, "--total-steps", str(int(args.steps)),
                                 "--num-envs", str(num_envs), "--seed", str(args.seed),
                                 "--log-seconds", "5", *args.flags], run_dir)
    write_curve(rows, args.out, f"MonoBeast, {args.env}")
    sps = training_sps(rows)
    final = [r for r in rows if "mean_return" in r][-1]
    print(f"MonoBeast {args.env}: {final['env_steps']:,.0f} steps in {elapsed:.0f} s wall; "
          f"mean-100 return at the budget {final['mean_return']:.2f} "
          f"({final['episodes']:,.0f} episodes)")
    print(f"training steps/s {sps:,.0f} = {sps / raw:.2f} x the raw env speed")
    print(f"curve: {args.out / 'curve.csv'}, {args.out / 'curve.png'}")


if __name__ == "__main__":
    main()
