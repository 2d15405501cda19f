"""Remote actors behind a network delay: weight bytes on the wire, speed and return per sync.

With remote actors (`polybeast --actors remote`) each weight sync is a WEIGHTS frame on the
network, so a sync policy that sends fewer saves real bytes. Here a LatencyRelay
(bench/latency_relay.py, --delay-ms each way) sits between 2 hand-started remote actors (16 envs
each) and the learner. On CartPole-v1 and MinAtar Breakout-v1, --seeds seeds each (seed i for the
learner and its actors): remote every-step, periodic-16 and APS delta 0.01, beside central
inference (`--actors central`, 2 hand-started env servers each behind a relay: every env step
pays a round trip, and weights never cross the network, shown "-"). Per run: weight bytes on the
wire per 1M env steps (`aps/bytes_synced`), steps/s (env steps / wall time, start-up included),
final return (mean_return over the last 10% of log rows), seconds to the first mean-100 return
>= a threshold (CartPole 475; Breakout 10, an early-learning mark). Prints the runs, the medians
per arm and two expectation checks (APS sends >= 5x fewer bytes than every-step at a similar
return; remote vs central steps/s), and writes runs.csv and table.csv to --out. The defaults
take about 20 minutes on 2 cores.

    python bench/remote_aps.py [--envs cartpole,breakout] [--seeds 2] [--delay-ms 1]
        [--steps-cartpole 300000] [--steps-breakout 400000] [--out bench/out/remote_aps]
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from aps_experiment import ARMS as SYNC_FLAGS, write_csv  # same folder's helpers
from latency_relay import LatencyRelay
from mono_cartpole import read_rows

from beast.mono.actor import actor_seed


@dataclass(frozen=True)
class Task:
    env: str
    threshold: float  # mean-100 return that counts as "there" for the time-to-threshold figure
    steps: int  # default env-step budget per run


TASKS = {"cartpole": Task("CartPole-v1", 475.0, 300_000),
         "breakout": Task("MinAtar/Breakout-v1", 10.0, 400_000)}
REMOTE_ARMS = {name: SYNC_FLAGS[name] for name in ("every-step", "periodic-16", "aps-0.01")}
ARMS = [*REMOTE_ARMS, "central"]
NUM_ACTORS, NUM_ENVS, UNROLL, BATCH = 2, 16, 20, 2  # a batch: one unroll from each actor
CHILD_ENV = {**os.environ, "BEAST_NET_SPIN_US": "0"}  # no busy-polling sockets on 2 cores
ROOT = Path(__file__).resolve().parent.parent  # children's cwd: bench/minatar.py shadows minatar


def free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % sock.getsockname()[1]


def env_flags(task: Task) -> list[str]:
    return ["--env", task.env, "--num-envs", str(NUM_ENVS)]


def start(args: list[str], log: Path, stdout: int | None = None) -> subprocess.Popen:
    """`python -m ARGS`, its output to `log` (stderr only, with stdout=PIPE)."""
    with log.open("w") as handle:
        return subprocess.Popen([sys.executable, "-m", *args], env=CHILD_ENV, cwd=ROOT, text=True,
                                stdout=stdout or handle,
                                stderr=handle if stdout else subprocess.STDOUT)


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def side_log(run_dir: Path, name: str) -> Path:
    return run_dir.parent / f"{run_dir.name}.{name}.log"


def run_learner(flags: list[str], run_dir: Path, timeout: float,
                helpers: dict[subprocess.Popen, Path]) -> list[dict[str, float]]:
    """Run `python -m beast.poly` to its budget; its log rows. RuntimeError with its last
    lines if it fails, outlives `timeout`, or one of `helpers` (the actors or env servers
    started by hand, with their logs) exits while it runs: nobody restarts those."""
    log = side_log(run_dir, "learner")
    learner = start(["beast.poly", *flags, "--num-actors", str(NUM_ACTORS), "--unroll-length",
                     str(UNROLL), "--batch-size", str(BATCH), "--log-seconds", "1",
                     "--savedir", str(run_dir.parent), "--run-name", run_dir.name], log)
    deadline = time.monotonic() + timeout
    while learner.poll() is None:
        dead = next((path for p, path in helpers.items() if p.poll() is not None), None)
        late = time.monotonic() > deadline
        if dead or late:
            try:  # an actor may stop first at the learner's own shutdown: give it 10 s
                learner.wait(0 if late else 10)
            except subprocess.TimeoutExpired:
                stop([learner])
                why = f"timed out after {timeout:.0f} s" if late else \
                    f"{dead.name} exited:\n{tail(dead)}"
                raise RuntimeError(f"{why}\n-- the learner's last lines:\n{tail(log)}") from None
        time.sleep(0.5)
    if learner.returncode != 0 or not (run_dir / "logs.csv").exists():
        raise RuntimeError(f"the learner exited with {learner.returncode}:\n{tail(log)}")
    return read_rows(run_dir)


def run_remote(task: Task, seed: int, steps: int, delay_s: float, run_dir: Path,
               timeout: float, arm: str) -> list[dict[str, float]]:
    """2 actors started by hand -> one relay -> the learner's fixed address."""
    address = free_address()
    with LatencyRelay(address, delay_s) as relay:
        actors = {start(["beast.poly.actor", "--learner", relay.address, *env_flags(task),
                         "--unroll-length", str(UNROLL), "--seed", str(actor_seed(seed, i, 0))],
                        log := side_log(run_dir, f"actor{i}")): log for i in range(NUM_ACTORS)}
        try:
            return run_learner([*env_flags(task), "--actors", "remote", "--no-start-actors",
                                "--actor-address", address, *REMOTE_ARMS[arm], "--seed",
                                str(seed), "--total-steps", str(steps)], run_dir, timeout, actors)
        finally:
            stop(list(actors))


def run_central(task: Task, seed: int, steps: int, delay_s: float, run_dir: Path,
                timeout: float) -> list[dict[str, float]]:
    """2 env servers started by hand, a relay in front of each, one connection to each."""
    servers = {start(["beast.poly.env_server", *env_flags(task), "--address", "127.0.0.1:0"],
                     log := side_log(run_dir, f"server{i}"), stdout=subprocess.PIPE): log
               for i in range(NUM_ACTORS)}
    try:
        addresses = [server.stdout.readline().strip() for server in servers]  # its first line
        if not all(addresses):
            raise RuntimeError("an env server did not start:\n" +
                               "\n".join(map(tail, servers.values())))
        with ExitStack() as stack:
            relays = [stack.enter_context(LatencyRelay(a, delay_s)) for a in addresses]
            return run_learner([*env_flags(task), "--server-addresses",
                                *[r.address for r in relays], "--seed", str(seed),
                                "--total-steps", str(steps)], run_dir, timeout, servers)
    finally:
        stop(list(servers))


def summarise(rows: list[dict[str, float]], threshold: float, remote: bool) -> dict[str, float]:
    """One run's figures from its log rows (NaN: none, e.g. never reached the threshold)."""
    last = rows[-1]
    steps, wall = last["env_steps"], last["wall_time"]
    returns = [r["mean_return"] for r in rows[-max(1, len(rows) // 10):]
               if math.isfinite(r.get("mean_return", math.nan))]
    reached = [r["wall_time"] for r in rows if r.get("mean_return", -math.inf) >= threshold]
    return {"env_steps": steps, "wall_s": wall, "sps": steps / wall,
            "weight_bytes_per_1M": (last.get("aps/bytes_synced", math.nan) / steps * 1e6
                                    if remote else math.nan),
            "syncs_per_1M": last.get("aps/syncs_total", math.nan) / steps * 1e6,
            "final_return": statistics.fmean(returns) if returns else math.nan,
            "time_to_threshold_s": reached[0] if reached else math.nan,
            "reconnects": last.get("actor_restarts", 0.0)}


def median(values: list[float], unreached_is_inf: bool = False) -> float:
    """Median of the finite values; with `unreached_is_inf`, NaNs count as never (inf)."""
    if unreached_is_inf:
        values = [math.inf if math.isnan(v) else v for v in values]
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def fmt(value: float, spec: str = ",.0f") -> str:
    return format(value, spec) if math.isfinite(value) else "-"


COLUMNS = [("weight MB/1M steps", "weight_bytes_per_1M", 1e-6, ",.2f"),
           ("syncs/1M steps", "syncs_per_1M", 1.0, ",.0f"), ("steps/s", "sps", 1.0, ",.0f"),
           ("final return", "final_return", 1.0, ",.1f"),
           ("s to threshold", "time_to_threshold_s", 1.0, ",.1f")]


def print_rows(title: str, rows: list[dict], label: Callable[[dict], str]) -> None:
    print(f"\n{title}\n" + " | ".join(["arm", *[c[0] for c in COLUMNS]]))
    for row in rows:
        print(" | ".join([label(row), *[fmt(row[key] * scale, spec)
                                        for _, key, scale, spec in COLUMNS]]))


def report(name: str, task: Task, runs: list[dict], delay_ms: float) -> list[dict]:
    """Prints the per-seed rows, the medians per arm and the checks; returns the medians."""
    mine = [r for r in runs if r["env"] == task.env]
    print_rows(f"== {task.env}: per run ({delay_ms:g} ms one way, threshold "
               f"{task.threshold:g}) ==", mine, lambda r: f"{r['arm']} seed {r['seed']}" +
               (f" ({r['reconnects']:.0f} reconnects)" if r["reconnects"] else ""))
    table = []
    for arm in ARMS:
        arm_runs = [r for r in mine if r["arm"] == arm]
        if arm_runs:
            row = {"env": task.env, "arm": arm, "seeds": len(arm_runs),
                   "reached": sum(math.isfinite(r["time_to_threshold_s"]) for r in arm_runs)}
            for _, key, _, _ in COLUMNS:
                row[key] = median([r[key] for r in arm_runs], key == "time_to_threshold_s")
            table.append(row)
    print_rows(f"== {task.env}: medians per arm ==", table,
               lambda r: f"{r['arm']} ({r['seeds']} seeds, {r['reached']} reached)")
    arms = {row["arm"]: row for row in table}
    if {"every-step", "aps-0.01"} <= arms.keys():
        every, aps = arms["every-step"], arms["aps-0.01"]
        ratio = every["weight_bytes_per_1M"] / aps["weight_bytes_per_1M"]
        print(f"check 1 ({name}): APS 0.01 sent {ratio:.1f}x fewer weight bytes than every-step "
              f"(expected >= 5x: {'HELD' if ratio >= 5 else 'NOT HELD'}); final return "
              f"{aps['final_return']:.1f} vs {every['final_return']:.1f}")
    remote = [a for a in REMOTE_ARMS if a in arms]
    if remote and "central" in arms:
        central = arms["central"]["sps"]
        speeds = " / ".join(fmt(arms[a]["sps"]) for a in remote)
        ratios = " / ".join(f"{arms[a]['sps'] / central:.2f}x" for a in remote)
        print(f"check 2 ({name}): remote {' / '.join(remote)} {speeds} steps/s vs central "
              f"{fmt(central)} at {delay_ms:g} ms one way: {ratios} (expected > 1x: central "
              "pays a round trip per env step)")
    return table


def run_all(names: list[str], args: argparse.Namespace) -> list[dict]:
    """Every arm of every env and seed; a failed run is reported and left out."""
    runs = []
    with tempfile.TemporaryDirectory() as savedir:
        for name in names:
            task, steps = TASKS[name], getattr(args, f"steps_{name}")
            for seed in range(args.seeds):  # seeds outermost: drift hits every arm alike
                for arm in ARMS:
                    common = (task, seed, steps, args.delay_ms / 1e3,
                              Path(savedir) / f"{name}-{arm}-seed{seed}",
                              args.timeout or 60 + steps / 1000)
                    try:
                        rows = run_central(*common) if arm == "central" else \
                            run_remote(*common, arm)
                    except RuntimeError as exc:
                        print(f"FAILED {name} {arm} seed {seed}: {exc}", file=sys.stderr)
                        continue
                    runs.append({"env": task.env, "arm": arm, "seed": seed,
                                 **summarise(rows, task.threshold, arm != "central")})
                    print(f"done {name} {arm} seed {seed}: {runs[-1]['wall_s']:.0f} s",
                          file=sys.stderr, flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="cartpole,breakout",
                        help="comma-separated: " + ", ".join(TASKS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--delay-ms", type=float, default=1.0, help="one-way delay")
    for name, task in TASKS.items():
        parser.add_argument(f"--steps-{name}", type=int, default=task.steps)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per run (default: 60 + steps / 1000)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/remote_aps"))
    args = parser.parse_args()
    names = [n.strip() for n in args.envs.split(",") if n.strip()]
    if unknown := set(names) - TASKS.keys():
        parser.error(f"unknown --envs {sorted(unknown)}; choose from {list(TASKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    if not (runs := run_all(names, args)):
        raise SystemExit("no run finished")
    table = [row for name in names for row in report(name, TASKS[name], runs, args.delay_ms)]
    write_csv(args.out / "runs.csv", runs)
    write_csv(args.out / "table.csv", table)
    print(f"\nwrote {args.out / 'runs.csv'}, {args.out / 'table.csv'}")


if __name__ == "__main__":
    main()
