"""PolyBeast CartPole with env servers on 1 vs 2 local Ray nodes, beside the plain launcher.

Prints, measured in this run (medians over --repeats):
  (a) steps/s with learning of the plain launcher (2 local servers, the baseline), and of
      `--ray-address` with the same 2 servers on one Ray node and spread over two;
  (b) the time from SIGKILL of one env server to the first step from its replacement, for
      Ray-placed servers (Ray restarts the actor) and the launcher's own (it restarts them):
      the wall time until the run logs the reconnect, and the pool's own figure (loss seen ->
      session up; its first step follows at once).

The Ray cluster is ray.cluster_utils.Cluster on loopback (a head and a worker node, each with
one CPU and a custom resource that pins servers to it); it is shut down at the end, never with
`ray stop`. On a 2-core machine both nodes share the same cores, so (a) measures Ray's
placement overhead, not scaling; on real nodes the servers' envs run on the nodes' cores.

    python bench/ray_scaling.py [--repeats 3] [--steps 600000] [--kills 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from mono_cartpole import read_rows, run_mono, training_sps  # same folder's helpers

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray stays on 127.0.0.1
COMMON = ["--num-actors", "2", "--num-envs", "32", "--log-seconds", "1"]


def layouts(address: str) -> dict[str, list[str]]:
    """Flags for the three layouts, each with 2 env servers and 2 actor connections."""
    return {
        "plain launcher": ["--num-servers", "2"],
        "ray, 1 node": ["--ray-address", address, "--servers-per-node", "2", "--server-cpus",
                        "0.25", "--server-resources", json.dumps({"node_a": 0.5})],
        "ray, 2 nodes": ["--ray-address", address, "--servers-per-node", "1", "--server-cpus",
                         "0.25", "--server-resources", json.dumps({"env_node": 1})],
    }


def server_pids(ray: bool, launcher: int) -> list[int]:
    """Ray's env-server workers, or the env servers the launcher started."""
    command = (["pgrep", "-f", "ray::EnvServerHost"] if ray else
               ["pgrep", "-f", "beast.poly.env_server", "-P", str(launcher)])
    found = subprocess.run(command, capture_output=True, text=True)
    return sorted(int(pid) for pid in found.stdout.split())


def kill_to_first_step(flags: list[str], ray: bool, kills: int, run_dir: Path
                       ) -> tuple[list[float], list[float]]:
    """Kill one server `kills` times in one run; (wall seconds to the logged reconnect, the
    pool's own loss -> reconnect seconds) for each."""
    process = subprocess.Popen(
        [sys.executable, "-m", "beast.poly", *COMMON, *flags, "--total-steps", "1000000000",
         "--savedir", str(run_dir.parent), "--run-name", run_dir.name],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True)
    lines: list[tuple[float, str]] = []
    threading.Thread(target=lambda: lines.extend((time.monotonic(), line)
                                                 for line in process.stderr),
                     daemon=True).start()
    walls, pool_times = [], []
    try:
        wait(lambda: (run_dir / "logs.csv").exists() and len(read_rows(run_dir)) >= 2, 120)
        for _ in range(kills):
            seen = len(lines)
            os.kill(server_pids(ray, process.pid)[0], signal.SIGKILL)
            killed = time.monotonic()
            wait(lambda: any("reconnected to" in line for _, line in lines[seen:]), 120)
            at, line = next((t, line) for t, line in lines[seen:] if "reconnected to" in line)
            walls.append(at - killed)
            pool_times.append(float(re.search(r"\(([\d.]+) s\)", line).group(1)))
            time.sleep(3)  # let the run settle before the next kill
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(60)
    return walls, pool_times


def wait(condition, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise RuntimeError("the run did not get there in time")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600_000)
    parser.add_argument("--kills", type=int, default=3)
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "resources": {"node_a": 1, "env_node": 1}})
    try:
        cluster.add_node(num_cpus=1, resources={"node_b": 1, "env_node": 1})
        cluster.wait_for_nodes()
        with tempfile.TemporaryDirectory() as tmp:
            sps: dict[str, list[float]] = {}
            for repeat in range(args.repeats):  # interleaved, so drift hits every layout alike
                for name, flags in layouts(cluster.address).items():
                    run_dir = Path(tmp) / f"sps-{repeat}-{name.replace(' ', '_')}"
                    _, rows, _ = run_mono([*COMMON, *flags, "--total-steps", str(args.steps)],
                                          run_dir, "beast.poly")
                    sps.setdefault(name, []).append(training_sps(rows))
            baseline = statistics.median(sps["plain launcher"])
            for name, values in sps.items():
                median = statistics.median(values)
                print(f"(a) {name:15s}: {median:9,.0f} steps/s with learning (median of "
                      f"{len(values)}), {median / baseline:.2f}x the plain launcher")
            for name, ray in (("ray, 2 nodes", True), ("plain launcher", False)):
                walls, pool_times = kill_to_first_step(
                    layouts(cluster.address)[name], ray, args.kills, Path(tmp) / f"kill-{ray}")
                print(f"(b) {name:15s}: kill -> first step from the replacement: median "
                      f"{statistics.median(walls):.2f} s wall to the logged reconnect, "
                      f"{statistics.median(pool_times):.2f} s by the pool "
                      f"(over {len(walls)} kills)")
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
