"""Raw environment speed: a vector env stepped with random actions, no model, no learning.

The ceiling a runtime's steps/s is measured against (the other benches import `raw_env_sps`).

    python bench/env_speed.py --env MinAtar/Breakout-v1 --num-envs 64 [--backend envpool]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from beast.envs import make_vector_env


def raw_env_sps(env_id: str, num_envs: int, seconds: float, backend: str = "gymnasium") -> float:
    """Env steps/s of one process stepping `num_envs` envs with uniformly random actions."""
    envs = make_vector_env(env_id, num_envs, backend=backend)
    rng = np.random.default_rng(0)
    envs.reset(seed=0)
    n = envs.single_action_space.n
    for _ in range(10):  # warm up
        envs.step(rng.integers(0, n, num_envs))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(rng.integers(0, n, num_envs))
        steps += num_envs
    elapsed = time.perf_counter() - start
    envs.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--backend", default="gymnasium")
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    sps = raw_env_sps(args.env, args.num_envs, args.seconds, args.backend)
    print(f"{args.env} x{args.num_envs} ({args.backend}): {sps:,.0f} env steps/s")


if __name__ == "__main__":
    main()
