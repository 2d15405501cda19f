"""PolyBeast on CartPole-v1: steps/s with learning and time to solve, beside MonoBeast.

Prints, measured in this run: PolyBeast steps/s with learning and MonoBeast's (same recipe,
same budget) and their ratio; wall time from launch to a mean-100 training return >= 475 for
both, over several seeds.

    python bench/poly_cartpole.py [--seeds 3] [--actors 1] [--num-envs 64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from mono_cartpole import median_solve_time, run_mono, training_sps  # same folder's helpers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sps-steps", type=int, default=2_000_000)
    parser.add_argument("--actors", type=int, default=1, help="PolyBeast actor connections")
    parser.add_argument("--num-envs", type=int, default=64, help="PolyBeast envs per connection")
    args = parser.parse_args()
    runtimes = {
        "poly": ["beast.poly", "--num-actors", str(args.actors), "--num-envs", str(args.num_envs)],
        "mono": ["beast.mono"],
    }
    with tempfile.TemporaryDirectory() as tmp:
        sps = {}
        for name, (module, *flags) in runtimes.items():
            _, rows, _ = run_mono([*flags, "--total-steps", str(args.sps_steps),
                                   "--log-seconds", "1"], Path(tmp) / f"sps-{name}", module)
            sps[name] = training_sps(rows)
            print(f"{name}Beast steps/s with learning: {sps[name]:,.0f}")
        print(f"PolyBeast / MonoBeast: {sps['poly'] / sps['mono']:.2f}")
        for name, (module, *flags) in runtimes.items():
            median_solve_time(name, module, flags, args.seeds, Path(tmp))


if __name__ == "__main__":
    main()
