"""A plain Gymnasium loop over env servers (DETACH): `RemoteVectorEnv` is a `VectorEnv`.

Starts `num_servers` env server processes on 127.0.0.1 (`python -m beast.poly.env_server`, each
hosting `num_envs` envs per connection), runs random actions through them with the ordinary
reset / step loop, then closes the client and stops every server, also when the loop raises
or is interrupted. With `local=True` the same loop runs over a local `SyncVectorEnv`: the same
seeds give exactly the same episodes, which is the point of the one-line switch (for an id
whose env Gymnasium has no native vector version of; CartPole's native one, which the servers
run, seeds its envs differently):

    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")   # local
    envs = RemoteVectorEnv(addresses, env_id=env_id)                      # remote

Run: `python examples/remote_vector_env.py --env Acrobot-v1 --num-servers 2 --steps 600`.
"""

from __future__ import annotations

import argparse
import select
import signal
import subprocess
import sys
from contextlib import ExitStack

import gymnasium as gym
import numpy as np

from beast.poly.remote_env import RemoteVectorEnv

START_TIMEOUT_S = 30.0


def start_server(stack: ExitStack, env_id: str, num_envs: int) -> tuple[subprocess.Popen, str]:
    """One env server on a free loopback port; `stack` stops it on exit. Returns the process and
    the address it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "beast.poly.env_server", "--env", env_id,
                             "--num-envs", str(num_envs), "--address", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True)
    stack.callback(stop_server, proc)  # registered before anything else can raise
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
    address = proc.stdout.readline().strip() if ready else ""
    if not address:
        raise RuntimeError(f"env server did not start (exit code {proc.poll()})")
    return proc, address


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM: the server closes its connections and exits 0; kill it if it does not."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.stdout.close()


def main(env_id: str = "Acrobot-v1", num_servers: int = 2, num_envs: int = 4, steps: int = 600,
         seed: int = 0, local: bool = False) -> dict:
    """`steps` vector steps of random actions; returns the env steps, the sums of every reward
    and observation, the finished episodes' returns, and the servers' pids and exit codes (0
    after a clean stop)."""
    servers: list[subprocess.Popen] = []
    with ExitStack() as stack:  # closes the env, then stops the servers, in reverse order
        if local:
            envs = gym.make_vec(env_id, num_envs=num_servers * num_envs,
                                vectorization_mode="sync")
        else:
            started = [start_server(stack, env_id, num_envs) for _ in range(num_servers)]
            servers = [proc for proc, _ in started]
            envs = RemoteVectorEnv([address for _, address in started], env_id=env_id)
        stack.callback(envs.close)

        envs.action_space.seed(seed)
        obs, _ = envs.reset(seed=seed)  # env i gets seed + i, as Gymnasium's vector envs do
        episode_return = np.zeros(envs.num_envs)
        returns: list[float] = []
        reward_sum, obs_sum = 0.0, float(np.sum(obs))
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = envs.step(envs.action_space.sample())
            # Next-step autoreset: the step after an end is the reset, with reward 0.
            episode_return += reward
            reward_sum += float(np.sum(reward))
            obs_sum += float(np.sum(obs))  # a checksum of the trajectory
            ended = terminated | truncated
            returns += episode_return[ended].tolist()
            episode_return[ended] = 0.0
        num_envs_total = envs.num_envs
    print(f"{len(returns)} episodes over {steps * num_envs_total} env steps "
          f"({'local' if local else f'{num_servers} servers'}), mean return "
          f"{np.mean(returns) if returns else float('nan'):.1f}")
    return {"env_steps": steps * num_envs_total, "reward_sum": reward_sum, "obs_sum": obs_sum,
            "returns": returns,
            "server_pids": [p.pid for p in servers], "exit_codes": [p.returncode for p in servers]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="Acrobot-v1")
    parser.add_argument("--num-servers", type=int, default=2)
    parser.add_argument("--num-envs", type=int, default=4, help="envs per server")
    parser.add_argument("--steps", type=int, default=600, help="vector steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--local", action="store_true", help="a local SyncVectorEnv instead")
    args = parser.parse_args()
    main(args.env, args.num_servers, args.num_envs, args.steps, args.seed, args.local)
