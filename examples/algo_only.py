"""Only `beast.algo`: your own model, optimiser and env loop; Beast supplies the loss.

Collects [T+1, B] rollouts from a Gymnasium vector env with a tiny torch actor-critic, lets
`align_rollout` turn each into per-transition [T, B] inputs (no index arithmetic here), and
minimises V-trace's policy gradient + value + entropy terms. No learner, runtime or config.

    python examples/algo_only.py --total-steps 50000 --seed 0
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.algo import (align_rollout, baseline_loss, entropy_loss, policy_gradient_loss,
                        vtrace_from_importance_weights)


class ActorCritic(nn.Module):
    """Any model will do: the loss needs only action logits and a value per observation."""

    def __init__(self, obs_size: int, num_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_size, hidden), nn.Tanh(),
                                  nn.Linear(hidden, hidden), nn.Tanh())
        self.logits, self.value = nn.Linear(hidden, num_actions), nn.Linear(hidden, 1)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(obs)
        return self.logits(h), self.value(h).squeeze(-1)


def log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def main(total_steps: int = 50_000, seed: int = 0, num_envs: int = 8, unroll_length: int = 8,
         learning_rate: float = 3e-3, discount: float = 0.99) -> dict[str, list[float]]:
    """Train; returns the finished episodes' returns and the loss of every update, in order."""
    torch.manual_seed(seed)
    # Gymnasium's default next-step autoreset: the step after a final observation ignores its
    # action and returns the next episode's first one. align_rollout's `valid` masks it.
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * num_envs)
    model = ActorCritic(envs.single_observation_space.shape[0], envs.single_action_space.n)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)

    def act(obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits, _ = model(torch.as_tensor(obs, dtype=torch.float32))
        return torch.distributions.Categorical(logits=logits).sample(), logits

    obs, _ = envs.reset(seed=seed)
    action, logits = act(obs)
    # Entry i holds o_i, the reward and end flags of the step INTO o_i, and a_i chosen at o_i.
    # Entry 0 repeats the previous unroll's last entry (nothing led into the first o_0).
    last = {"obs": torch.as_tensor(obs), "reward": torch.zeros(num_envs),
            "terminated": torch.zeros(num_envs, dtype=torch.bool),
            "truncated": torch.zeros(num_envs, dtype=torch.bool),
            "action": action, "policy_params": logits}
    running, returns, losses = np.zeros(num_envs), [], []
    for _ in range(total_steps // (num_envs * unroll_length)):
        entries = [last]
        for _ in range(unroll_length):
            obs, reward, terminated, truncated, _ = envs.step(entries[-1]["action"].numpy())
            running += reward
            for i in np.flatnonzero(terminated | truncated):
                returns.append(float(running[i]))
                running[i] = 0.0
            action, logits = act(obs)
            entries.append({"obs": torch.as_tensor(obs),
                            "reward": torch.as_tensor(reward, dtype=torch.float32),
                            "terminated": torch.as_tensor(terminated),
                            "truncated": torch.as_tensor(truncated),
                            "action": action, "policy_params": logits})
        last = entries[-1]
        rollout = {k: torch.stack([e[k] for e in entries]) for k in last}  # [T+1, B, ...]

        pi_logits, values = model(rollout["obs"])                  # over all T+1 entries
        steps = align_rollout(rollout, discount, values=values)    # -> [T, B]
        pi_logits = steps.at_tm1(pi_logits)                        # drop entry T
        log_pi = log_prob(pi_logits, steps.a_tm1)
        log_mu = log_prob(steps.mu_tm1, steps.a_tm1)  # mu: the policy that acted (entry 0's
        # action is one update old); V-trace's truncated importance weights correct for it.
        vtrace = vtrace_from_importance_weights(
            log_pi.detach() - log_mu, steps.discount_t, steps.r_t, steps.v_tm1.detach(),
            steps.bootstrap_value, valid=steps.valid)
        entropy = torch.distributions.Categorical(logits=pi_logits).entropy()
        loss = (policy_gradient_loss(log_pi, vtrace.pg_advantages, mask=steps.valid)
                + 0.5 * baseline_loss(steps.v_tm1, vtrace.vs, mask=steps.valid)
                + 0.01 * entropy_loss(entropy, mask=steps.valid))
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 40.0)
        optimiser.step()
        losses.append(loss.item())
    envs.close()
    return {"returns": returns, "losses": losses}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # tensors this small run fastest on one thread; more only contend
    result = main(total_steps=args.total_steps, seed=args.seed)
    tail = result["returns"][-20:]
    print(f"{len(result['returns'])} episodes; mean return of the last {len(tail)}: "
          f"{np.mean(tail):.1f}; last loss {result['losses'][-1]:.3f}")
