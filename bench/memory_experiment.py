"""The episodic-memory experiment of ../shared/specs/episodic_memory.md: IMPALA+LSTM against
the same agent with the memory, on ZipfGridworld's mini preset, at an equal env-step budget.

1. Calibrate: the plain agent (seed 0) must show Zipfian - Rare >= 0.25. If it does not, alpha
   is raised (a steeper law makes the rare pairs rarer); if Rare is 0, lowered. The last
   calibration run is the plain arm's seed 0.
2. Run --seeds seeds per arm, MonoBeast with one actor process, the same flags but the memory.
3. Evaluate each run with `--eval RUN --eval-episodes N` (the three accuracies), and each
   (map, target) pair's success over N uniform games (success against frequency rank).

Both arms feed the core the last action and the reward (--last-action-reward; the memory
implies it), so the arms differ by the memory alone. Writes, under --out:
  runs.csv     arm, seed, alpha, zipfian, uniform, rare (+ intervals), env_steps, seconds/step
  ranks.csv    rank, map, target, probability, success per arm (mean over seeds)
  ranks.png    success against frequency rank, one line per arm
and prints the table: mean ± 95% interval over seeds (t-distribution), paired wins on Rare,
and wall time per step with the memory against the plain agent's.

    python bench/memory_experiment.py [--steps 1000000] [--seeds 3] [--episodes 1000] [--alpha 1.5]
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from zipf_variants import ALPHAS, variant_id  # noqa: E402

from beast.config import Config, EvalConfig  # noqa: E402
from beast.envs import make_vector_env_from_config  # noqa: E402
from beast.envs.zipf_gridworld import PRESETS, probabilities  # noqa: E402
from beast.evaluate import EVAL_SEED, load_policy, play_episodes, saved_config  # noqa: E402

COMMON = ["--num-envs", "32", "--unroll-length", "12", "--batch-size", "8", "--num-actors",
          "1", "--slots-per-actor", "12", "--hidden-sizes", "64", "--use-lstm",
          "--last-action-reward", "--log-seconds", "5"]
ARMS = {"plain": [], "memory": ["--episodic-memory"]}
T_95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57}  # two-sided 95% t quantiles by dof


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    return env


def train(run_dir: Path, alpha: float, seed: int, steps: int, arm: str) -> tuple[int, float]:
    """Train one run; returns (env steps, training seconds) from its summary line."""
    flags = [*COMMON, *ARMS[arm], "--env", f"zipf_variants:{variant_id(alpha)}", "--seed",
             str(seed), "--total-steps", str(steps), "--savedir", str(run_dir.parent),
             "--run-name", run_dir.name]
    result = subprocess.run([sys.executable, "-m", "beast.mono", *flags], capture_output=True,
                            text=True, env=child_env())
    if result.returncode != 0:
        raise RuntimeError(f"training {run_dir.name} failed:\n{result.stderr[-3000:]}")
    done = re.search(r"done: ([\d,]+) env steps in ([\d.]+) s", result.stdout + result.stderr)
    assert done, result.stdout[-2000:]
    return int(done.group(1).replace(",", "")), float(done.group(2))


def accuracies(run_dir: Path, episodes: int) -> dict[str, tuple[float, float]]:
    """--eval's three accuracies: name -> (mean, half-width of its 95% interval)."""
    result = subprocess.run([sys.executable, "-m", "beast.mono", "--eval", str(run_dir),
                             "--eval-episodes", str(episodes)], capture_output=True, text=True,
                            env=child_env())
    if result.returncode != 0:
        raise RuntimeError(f"--eval {run_dir} failed:\n{result.stderr[-3000:]}")
    found = re.findall(r"(Zipfian|Uniform|Rare) ([\d.]+) ± ([\d.]+)", result.stdout)
    assert len(found) == 3, result.stdout
    return {name.lower(): (float(mean), float(half)) for name, mean, half in found}


def pair_success(run_dir: Path, episodes: int) -> np.ndarray:
    """[n_maps, n_objects] success rate over `episodes` uniform games (frozen memory)."""
    saved = saved_config(run_dir)
    envs = make_vector_env_from_config(saved.env, 16, env_kwargs={"dist": "uniform"})
    try:
        model = load_policy(run_dir, Config(eval=EvalConfig(eval_episodes=episodes)), envs,
                            saved)
        stats = play_episodes(model, envs, episodes, EVAL_SEED + 1,
                              info_keys=("map", "target"))
    finally:
        envs.close()
    preset = PRESETS["mini"]
    wins = np.zeros((preset.n_maps, preset.n_objects))
    games = np.zeros_like(wins)
    for ret, info in zip(stats.returns, stats.infos):
        games[info["map"], info["target"]] += 1
        wins[info["map"], info["target"]] += ret > 0
    return wins / np.maximum(games, 1)


def interval(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, T_95.get(len(values) - 1, 1.96) * statistics.stdev(values) / len(values) ** 0.5


def calibrate(out: Path, steps: int, episodes: int, start_alpha: float) -> tuple[float, dict]:
    """The alpha at which plain seed 0 shows Zipfian - Rare >= 0.25 (else the last one
    tried), and that run's row."""
    alpha, tried = start_alpha, []
    while True:
        run_dir = out / f"calibrate-a{alpha}"
        env_steps, seconds = train(run_dir, alpha, 0, steps, "plain")
        acc = accuracies(run_dir, episodes)
        gap = acc["zipfian"][0] - acc["rare"][0]
        print(f"calibration alpha {alpha}: Zipfian {acc['zipfian'][0]:.3f}, Rare "
              f"{acc['rare'][0]:.3f}, gap {gap:.3f}")
        tried.append(alpha)
        row = {"arm": "plain", "seed": 0, "alpha": alpha, "run_dir": run_dir,
               "env_steps": env_steps, "seconds": seconds, **acc}
        if gap >= 0.25:
            return alpha, row
        step = 0.5 if acc["rare"][0] > 0 else -0.5  # rarer rare pairs, or not all at 0
        alpha = alpha + step
        if alpha not in ALPHAS or alpha in tried:
            print(f"calibration did not reach a gap of 0.25 (tried alpha {tried}); "
                  f"running at alpha {tried[-1]}")
            return tried[-1], row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)  # ~10 CPU-minutes in all
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="beast-memory-"))
    out.mkdir(parents=True, exist_ok=True)
    alpha, calibration = calibrate(out, args.steps, args.episodes, args.alpha)
    rows = [calibration]
    for seed in range(args.seeds):
        for arm in ARMS:
            if any(r["arm"] == arm and r["seed"] == seed for r in rows):
                continue
            run_dir = out / f"{arm}-s{seed}"
            env_steps, seconds = train(run_dir, alpha, seed, args.steps, arm)
            rows.append({"arm": arm, "seed": seed, "alpha": alpha, "run_dir": run_dir,
                         "env_steps": env_steps, "seconds": seconds,
                         **accuracies(run_dir, args.episodes)})
            print(f"{arm} seed {seed}: " + ", ".join(
                f"{k} {rows[-1][k][0]:.3f}" for k in ("zipfian", "uniform", "rare")))
    report(out, rows, alpha, args.episodes)


def report(out: Path, rows: list[dict], alpha: float, episodes: int) -> None:
    with (out / "runs.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["arm", "seed", "alpha", "zipfian", "zipfian_ci", "uniform",
                         "uniform_ci", "rare", "rare_ci", "env_steps", "seconds_per_step"])
        for r in rows:
            writer.writerow([r["arm"], r["seed"], r["alpha"],
                             *[x for k in ("zipfian", "uniform", "rare") for x in r[k]],
                             r["env_steps"], r["seconds"] / r["env_steps"]])
    by_arm = {arm: sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["seed"])
              for arm in ARMS}
    print(f"\nZipfGridworld mini, alpha {alpha}, {rows[0]['env_steps']:,} env steps per run, "
          f"{episodes} games per set; mean ± 95% interval over {len(by_arm['plain'])} seeds")
    print("| arm | Zipfian | Uniform | Rare | µs per env step |\n|---|---|---|---|---|")
    for arm, runs in by_arm.items():
        cells = [interval([r[k][0] for r in runs]) for k in ("zipfian", "uniform", "rare")]
        per_step = statistics.median(1e6 * r["seconds"] / r["env_steps"] for r in runs)
        print(f"| {arm} | " + " | ".join(f"{m:.3f} ± {h:.3f}" for m, h in cells)
              + f" | {per_step:.0f} |")
    plain, memory = by_arm["plain"], by_arm["memory"]
    wins = sum(m["rare"][0] > p["rare"][0] for p, m in zip(plain, memory))
    ratio = (statistics.median(r["seconds"] / r["env_steps"] for r in memory)
             / statistics.median(r["seconds"] / r["env_steps"] for r in plain))
    print(f"memory better on Rare in {wins} of {len(plain)} paired seeds; wall time per step "
          f"with memory: {ratio:.2f}x the plain agent's")
    ranks(out, by_arm, alpha, episodes)


def ranks(out: Path, by_arm: dict[str, list[dict]], alpha: float, episodes: int) -> None:
    """Success against frequency rank of the (map, target) pair, averaged over seeds."""
    preset = PRESETS["mini"]
    p_pair = np.outer(probabilities(preset.n_maps, alpha), probabilities(preset.n_objects, alpha))
    order = np.argsort(-p_pair, axis=None, kind="stable")
    success = {arm: np.mean([pair_success(r["run_dir"], episodes) for r in runs], axis=0)
               for arm, runs in by_arm.items()}
    with (out / "ranks.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "map", "target", "probability", *success])
        for rank, flat in enumerate(order, 1):
            m, k = np.unravel_index(flat, p_pair.shape)
            writer.writerow([rank, m, k, p_pair[m, k], *(s[m, k] for s in success.values())])
    fig, axes = plt.subplots(figsize=(7, 4))
    for arm, s in success.items():
        axes.plot(np.arange(1, order.size + 1), s.flat[order], marker=".", label=arm)
    axes.set(xlabel="(map, target) frequency rank", ylabel="success rate (uniform games)",
             title=f"ZipfGridworld mini, alpha {alpha}")
    axes.legend()
    fig.savefig(out / "ranks.png", dpi=120, bbox_inches="tight")
    print(f"wrote {out / 'runs.csv'}, {out / 'ranks.csv'}, {out / 'ranks.png'}")


if __name__ == "__main__":
    main()
