"""Your own training loop around Beast's Learner: CartPole, one process, no runtime.

Beast's runtimes (`python -m beast.mono`, `beast.poly`) are one way to feed the learner; this is
the smallest other one. The pieces and the call loop:

    learner = Learner(model, objective, optim, total_steps)      # optimiser, LR schedule, version
    worker = UnrollWorker(envs, model, T, seed)                   # acting (beast.acting)
    rollout = RolloutSpec.build(obs_space, model).allocate((T + 1, K))  # the one schema
    while counter.env_steps < total_steps:
        worker.fill(rollout, learner.version)      # T new steps; step 0 repeats the last one
        counter.add(rollout)                       # env steps and episodes, counted at the source
        result = learner.step(rollout, counter.env_steps)   # checked against the batch contract

The worker acts with the learner's own model (like `--num-actors 0`), so there are no weights
to copy and every step is acted by the newest policy. Run: `python examples/own_loop.py`.
"""

from __future__ import annotations

import argparse
import math

import torch

from beast.acting import UnrollWorker
from beast.batch_contract import learner_fields
from beast.config import LossConfig, ModelConfig, OptimConfig
from beast.envs import make_vector_env
from beast.learner import Learner
from beast.models import build_model
from beast.objectives import build_objective
from beast.rollout import EpisodeCounter, RolloutSpec


def main(total_steps: int = 100_000, num_envs: int = 16, unroll_length: int = 16,
         seed: int = 0, log_every: int = 50) -> dict[str, float]:
    """Train IMPALA on CartPole-v1 for `total_steps` env steps; returns the final counts and
    the mean return of the last 100 episodes (random play: about 22; solved: 500)."""
    torch.manual_seed(seed)  # the model's initial weights; acting has its own generator
    envs = make_vector_env("CartPole-v1", num_envs)
    # Beast's model for these spaces: an MLP policy-value net with a categorical head.
    model = build_model(envs.single_observation_space, envs.single_action_space, ModelConfig())
    # The objective is what the learner minimises (here V-trace actor-critic, --loss impala).
    learner = Learner(model, build_objective(LossConfig(), model), OptimConfig(),
                      total_steps=total_steps)
    print("Learner.step reads:", ", ".join(learner_fields(model)))

    # One [T+1, K] buffer in the rollout schema: obs, reward, terminated, truncated, the episode
    # sums, and what the model writes per step (action, policy_params, baseline, policy_version).
    # It starts poisoned (NaN / -1), so a step nobody wrote would fail the learner's check.
    rollout = RolloutSpec.build(envs.single_observation_space, model).allocate(
        (unroll_length + 1, num_envs))
    worker = UnrollWorker(envs, model, unroll_length, seed=seed)
    counter = EpisodeCounter()
    returns: list[float] = []
    losses: list[float] = []
    while counter.env_steps < total_steps:
        worker.fill(rollout, learner.version)
        counter.add(rollout)
        returns = (returns + counter.take_returns())[-100:]
        # NumPy arrays are wrapped without a copy; the step is done before the next fill.
        result = learner.step(rollout, counter.env_steps)
        losses.append(result.metrics["loss/total"])
        if learner.version % log_every == 0:
            mean = sum(returns) / max(1, len(returns))
            print(f"step {learner.version:5d}  env steps {counter.env_steps:7d}  "
                  f"loss {losses[-1]:+.3f}  mean return {mean:6.1f}  "
                  f"KL(mu||pi) {result.metrics['learner/kl_mean']:.2e}")
    envs.close()
    return {"learner_steps": learner.version, "env_steps": counter.env_steps,
            "episodes": counter.episodes,
            "mean_return": sum(returns) / max(1, len(returns)),
            "losses_finite": float(all(math.isfinite(x) for x in losses))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total-steps", type=int, default=100_000)
    parser.add_argument("--num-envs", type=int, default=16)
    parser.add_argument("--unroll-length", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main(args.total_steps, args.num_envs, args.unroll_length, args.seed))
