"""MonoBeast steps/s with the Gymnasium vector env against envpool, on CartPole and Pong.

For each env and backend, all measured in this run: the raw env speed (one process, random
actions, no model) and MonoBeast's training steps/s (1 actor process + learner, log rows after
start-up), then the envpool/Gymnasium ratios and each run's fraction of its raw env speed.

    python bench/envpool_vs_gym.py [--cartpole-steps 5e5] [--pong-steps 3e4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from env_speed import raw_env_sps  # same folder's helpers
from mono_cartpole import run_mono, training_sps

BACKENDS = ("gymnasium", "envpool")


def compare(label: str, env_id: str, num_envs: int, flags: list[str], tmp: Path) -> None:
    raw, trained = {}, {}
    for backend in BACKENDS:
        raw[backend] = raw_env_sps(env_id, num_envs, seconds=3.0, backend=backend)
        _, rows, _ = run_mono(["--env", env_id, "--env-backend", backend, "--num-envs",
                               str(num_envs), "--num-actors", "1", "--log-seconds", "2", *flags],
                              tmp / f"{label}-{backend}")
        trained[backend] = training_sps(rows)
        print(f"{label:9s} {backend:10s} raw env {raw[backend]:10,.0f} steps/s | MonoBeast "
              f"{trained[backend]:9,.0f} steps/s = {trained[backend] / raw[backend]:.2f} x raw")
    print(f"{label:9s} envpool / gymnasium: raw {raw['envpool'] / raw['gymnasium']:.2f}x, "
          f"MonoBeast {trained['envpool'] / trained['gymnasium']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cartpole-steps", type=float, default=5e5)
    parser.add_argument("--pong-steps", type=float, default=3e4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        compare("CartPole", "CartPole-v1", 64,
                ["--total-steps", str(int(args.cartpole_steps))], Path(tmp))
        compare("Pong", "ALE/Pong-v5", 16,
                ["--total-steps", str(int(args.pong_steps)), "--unroll-length", "20",
                 "--reward-clip", "abs_one"], Path(tmp))


if __name__ == "__main__":
    main()
