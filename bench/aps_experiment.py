"""The APS experiment (the APS design spec, not shipped; README: Weight synchronisation) on
CartPole-v1 with MonoBeast.

Arms, each over several seeds at a fixed env-step budget: sync every learner step; periodic
every N in {4, 16, 64} versions; APS with delta in {0.003, 0.01, 0.03}. Writes a per-run CSV,
a per-arm CSV table and a PNG (final return against syncs per 1M steps; APS sync rate over
training), and prints the table and whether each expected effect held.

    python bench/aps_experiment.py [--seeds 3] [--steps 1000000] [--out bench/out/aps]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ARMS = {
    "every-step": ["--sync", "every-step"],
    "periodic-4": ["--sync", "periodic", "--sync-period", "4"],
    "periodic-16": ["--sync", "periodic", "--sync-period", "16"],
    "periodic-64": ["--sync", "periodic", "--sync-period", "64"],
    "aps-0.003": ["--sync", "aps", "--aps-delta", "0.003"],
    "aps-0.01": ["--sync", "aps", "--aps-delta", "0.01"],
    "aps-0.03": ["--sync", "aps", "--aps-delta", "0.03"],
}
SOLVED = 475.0


def read_rows(run_dir: Path) -> list[dict[str, float]]:
    with (run_dir / "logs.csv").open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]


def summarise_run(rows: list[dict[str, float]], budget: int) -> dict[str, float]:
    """One run's figures from its log rows."""
    last = rows[-1]
    per_million = 1e6 / last["env_steps"]
    tail = [r["mean_return"] for r in rows if r["env_steps"] >= 0.9 * budget
            and r.get("mean_return") == r.get("mean_return")]
    solved = [r["env_steps"] for r in rows if r.get("mean_return", 0) >= SOLVED]
    first = rows[0] if len(rows) > 1 and last["wall_time"] > rows[0]["wall_time"] else {
        "env_steps": 0.0, "wall_time": 0.0}
    return {
        "syncs_per_1M": last["aps/syncs_total"] * per_million,
        "bytes_per_1M": last["aps/bytes_synced"] * per_million,
        "final_return": statistics.fmean(tail) if tail else float("nan"),
        "steps_to_solve": solved[0] if solved else float("nan"),
        "sps": (last["env_steps"] - first["env_steps"]) / (last["wall_time"] -
                                                           first["wall_time"]),
        "kl_mean": statistics.fmean(r["learner/kl_mean"] for r in rows if "learner/kl_mean" in r),
        "rho_clip_frac": statistics.fmean(r["impala/rho_clip_frac"] for r in rows
                                          if "impala/rho_clip_frac" in r),
        "log_rho_abs_mean": statistics.fmean(r["learner/log_rho_abs_mean"] for r in rows
                                             if "learner/log_rho_abs_mean" in r),
        "lag_mean": statistics.fmean(r["learner/lag_mean"] for r in rows if "learner/lag_mean" in r),
        "lag_max": max(r["learner/lag_max"] for r in rows if "learner/lag_max" in r),
        "sync_rate_first_quarter": sync_rate(rows, 0.0, 0.25 * budget),
        "sync_rate_last_quarter": sync_rate(rows, 0.75 * budget, budget),
    }


def sync_rate(rows: list[dict[str, float]], start: float, end: float) -> float:
    """Syncs per learner step between the logged rows nearest to env steps `start`, `end`."""
    def at(steps: float) -> dict[str, float]:
        if steps <= 0:
            return {"aps/syncs_total": 0.0, "version": 0.0}
        return min(rows, key=lambda r: abs(r["env_steps"] - steps))

    a, b = at(start), at(end)
    versions = b["version"] - a["version"]
    return (b["aps/syncs_total"] - a["aps/syncs_total"]) / versions if versions else float("nan")


def run_arm(arm: str, seed: int, steps: int, out: Path) -> dict[str, float]:
    run_dir = out / "runs" / f"{arm}-seed{seed}"
    command = [sys.executable, "-m", "beast.mono", *ARMS[arm], "--seed", str(seed),
               "--total-steps", str(steps), "--log-seconds", "0.5",
               "--savedir", str(run_dir.parent), "--run-name", run_dir.name]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{arm} seed {seed} failed:\n{result.stderr[-3000:]}")
    return {"arm": arm, "seed": seed, **summarise_run(read_rows(run_dir), steps)}


def aggregate(runs: list[dict]) -> list[dict]:
    table = []
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        row: dict = {"arm": arm, "seeds": len(mine)}
        for key in mine[0]:
            if key in ("arm", "seed"):
                continue
            values = np.array([r[key] for r in mine], dtype=float)
            finite = values[np.isfinite(values)]  # steps_to_solve is NaN for unsolved runs
            row[key] = float(finite.mean()) if finite.size else float("nan")
            row[f"{key}_std"] = float(finite.std()) if finite.size else float("nan")
        row["solved_runs"] = sum(r["steps_to_solve"] == r["steps_to_solve"] for r in mine)
        table.append(row)
    return table


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(path: Path, runs: list[dict], out: Path, seeds: int) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        left.scatter([r["syncs_per_1M"] for r in mine], [r["final_return"] for r in mine],
                     label=arm, marker="o" if arm.startswith("aps") else "s")
    left.set_xscale("log")
    left.set_xlabel("weight syncs per 1M env steps (log)")
    left.set_ylabel("final return (mean over the last 10% of steps)")
    left.legend(fontsize=8)
    for arm in [a for a in ARMS if a.startswith("aps")]:
        rows = read_rows(out / "runs" / f"{arm}-seed0")
        right.plot([r["env_steps"] for r in rows], [r["aps/syncs_per_learner_step"] for r in rows],
                   label=f"{arm} (seed 0)")
    right.set_xlabel("env steps")
    right.set_ylabel("syncs per learner step")
    right.legend(fontsize=8)
    fig.suptitle(f"APS on CartPole-v1, {seeds} seeds per arm")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def report(table: list[dict]) -> None:
    columns = ["arm", "syncs_per_1M", "final_return", "steps_to_solve", "sps", "kl_mean",
               "rho_clip_frac", "log_rho_abs_mean", "lag_mean", "lag_max", "sync_rate_first_quarter",
               "sync_rate_last_quarter", "solved_runs"]
    print(" | ".join(columns))
    for row in table:
        cells = [row["arm"]]
        for key in columns[1:]:
            value = row[key]
            spread = row.get(f"{key}_std")
            cells.append(f"{value:,.4g}" + (f" ±{spread:,.2g}" if spread == spread and spread
                                            else ""))
        print(" | ".join(cells))
    arms = {row["arm"]: row for row in table}
    every, aps = arms["every-step"], arms["aps-0.01"]
    fewer = 1 - aps["syncs_per_1M"] / every["syncs_per_1M"]
    noise = max(every["final_return_std"], aps["final_return_std"], 1.0)
    print(f"\n1. APS(0.01) syncs {fewer:.0%} fewer than every-step (expected >= 50%): "
          f"{'HELD' if fewer >= 0.5 else 'NOT HELD'}; final return {aps['final_return']:.1f} vs "
          f"{every['final_return']:.1f} (noise ±{noise:.1f}): "
          f"{'within noise' if abs(aps['final_return'] - every['final_return']) <= 2 * noise else 'OUTSIDE noise'}")
    periodic = [arms[a] for a in arms if a.startswith("periodic")]
    for name in [a for a in arms if a.startswith("aps")]:
        row = arms[name]
        match = min(periodic, key=lambda p: abs(p["syncs_per_1M"] - row["syncs_per_1M"]))
        as_good = row["final_return"] >= match["final_return"] - 2 * max(
            row["final_return_std"], match["final_return_std"], 1.0)
        verdicts = [f"{label} {row[key]:.4f} vs {match[key]:.4f} "
                    f"({'lower' if row[key] < match[key] else 'NOT lower'})"
                    for label, key in (("KL", "kl_mean"), ("rho clip", "rho_clip_frac"),
                                       ("|log rho|", "log_rho_abs_mean"))]
        print(f"2. {name} ({row['syncs_per_1M']:.0f} syncs/1M) vs {match['arm']} "
              f"({match['syncs_per_1M']:.0f}): {', '.join(verdicts)}; return "
              f"{row['final_return']:.1f} vs {match['final_return']:.1f} "
              f"({'equal or better' if as_good else 'WORSE'})")
        falls = row["sync_rate_first_quarter"] > row["sync_rate_last_quarter"]
        print(f"3. {name} sync rate first quarter {row['sync_rate_first_quarter']:.3f} -> last "
              f"quarter {row['sync_rate_last_quarter']:.3f}: {'HELD' if falls else 'NOT HELD'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench/out/aps"))
    args = parser.parse_args()
    shutil.rmtree(args.out / "runs", ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in range(args.seeds):
        for arm in ARMS:
            runs.append(run_arm(arm, seed, args.steps, args.out))
            print(f"done {arm} seed {seed}", file=sys.stderr, flush=True)
    write_csv(args.out / "runs.csv", runs)
    table = aggregate(runs)
    write_csv(args.out / "table.csv", table)
    plot(args.out / "aps.png", runs, args.out, args.seeds)
    report(table)
    print(f"\nwrote {args.out / 'table.csv'}, {args.out / 'runs.csv'}, {args.out / 'aps.png'}")


if __name__ == "__main__":
    main()
