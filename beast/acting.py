"""Acting, runtime-agnostic: one policy step for a batch of envs, and the unroll writer.

MonoBeast's actor processes and serial mode, PolyBeast's central inference and `--eval` all act
through `policy_step`, so the agent half of a rollout entry (beast.rollout.agent_fields) is
written by one function whatever the runtime:

    carry = initial_carry(model, batch_size)      # core_state / last_action, if the model has them
    agent, carry = policy_step(model, obs, carry, done, generator, version, reward=reward)
    # agent: action, policy_params, baseline, policy_version [, carried keys][, extras...]

The carried keys (`carry_keys`: a recurrent model's state, and the last action's features
for a core that reads them) are fed back as the next step's input; an entry records the value
entering its step, the one it acted from.

`UnrollWorker` steps a vector env with it and writes [T+1, K] unrolls:

    worker = UnrollWorker(envs, model, unroll_length=T, seed=s)
    while running:
        worker.fill(slot_views, policy_version)   # writes steps 0..T of one unroll
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.distributions import action_feature_size, action_features
from beast.models import act_step
from beast.rollout import CORE_STATE, LAST_ACTION, game_over


def carry_keys(model: nn.Module) -> list[str]:
    """The agent keys fed back from step to step for `model` (see the module docstring)."""
    keys = [CORE_STATE] if model.core_state_shape is not None else []
    if LAST_ACTION in getattr(model, "step_inputs", ()):
        keys.append(LAST_ACTION)
    return keys


def initial_carry(model: nn.Module, batch_size: int) -> dict[str, torch.Tensor]:
    """The carried values entering a fresh session's first step: zeros."""
    carry = {}
    if model.core_state_shape is not None:
        carry[CORE_STATE] = model.initial_state(batch_size)
    if LAST_ACTION in getattr(model, "step_inputs", ()):
        carry[LAST_ACTION] = torch.zeros(batch_size, action_feature_size(model.dist))
    return carry


@torch.inference_mode()
def policy_step(model: nn.Module, obs: torch.Tensor, carry: dict[str, torch.Tensor],
                done: torch.Tensor, generator: torch.Generator, version: int,
                reward: torch.Tensor | None = None, greedy: bool = False
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One step for B envs: the agent half of their entries ([B, ...] tensors) and the carry
    entering the next step. `carry` is what enters this step (`initial_carry` at first;
    recorded in the entry); `done` [B]: o_t ended an episode, so the next step starts one
    (state and last action zeroed); `reward` [B]: the reward that produced o_t, read by a
    core with --last-action-reward. `greedy` takes the most likely action instead of sampling
    (evaluation only: training samples)."""
    inputs = {}
    if "reward" in getattr(model, "step_inputs", ()):
        if reward is None:
            raise ValueError("this model reads the reward at each step: pass policy_step reward=")
        inputs["reward"] = reward
    if LAST_ACTION in carry:
        inputs[LAST_ACTION] = carry[LAST_ACTION]
    output = act_step(model, obs, carry.get(CORE_STATE), done, inputs or None)
    action = (model.dist.mode(output.policy_params) if greedy
              else model.dist.sample(output.policy_params, generator))
    agent = {"action": action, "policy_params": output.policy_params,
             "baseline": output.baseline,
             "policy_version": torch.full(output.baseline.shape, version, dtype=torch.int64),
             **carry}
    if output.extras:
        agent.update(output.extras)
    next_carry = {}
    if output.core_state is not None:
        next_carry[CORE_STATE] = output.core_state
    if LAST_ACTION in carry:
        features = action_features(model.dist, action)
        next_carry[LAST_ACTION] = features * (~done.bool()).unsqueeze(-1).to(features.dtype)
    return agent, next_carry


class UnrollWorker:
    """Steps a vector env with a policy and writes [T+1, K] unrolls (see beast.rollout)."""

    def __init__(self, envs: gym.vector.VectorEnv, model: nn.Module, unroll_length: int,
                 seed: int) -> None:
        self.envs = envs
        self.model = model
        self.unroll_length = unroll_length
        self.generator = torch.Generator().manual_seed(seed)
        obs, _ = envs.reset(seed=seed)
        k = envs.num_envs
        self.step = {  # the latest env output, i.e. the next unroll's step 0
            "obs": obs,
            "reward": np.zeros(k, np.float32),
            "terminated": np.zeros(k, bool),
            "truncated": np.zeros(k, bool),
            "episode_return": np.zeros(k, np.float32),
            "episode_step": np.zeros(k, np.int32),
        }
        self.game_over = np.zeros(k, bool)  # whether the latest step ended a whole game
        self.agent: dict[str, np.ndarray] | None = None
        self.carry = initial_carry(model, k)  # entering the current step (see carry_keys)

    def _act(self, version: int) -> dict[str, np.ndarray]:
        done = torch.from_numpy(self.step["terminated"] | self.step["truncated"])
        agent, self.carry = policy_step(self.model, torch.from_numpy(self.step["obs"]),
                                        self.carry, done, self.generator, version,
                                        reward=torch.from_numpy(self.step["reward"]))
        return {key: value.numpy() for key, value in agent.items()}

    def _env_step(self, action: np.ndarray) -> None:
        previous = self.step
        ended = self.game_over
        obs, reward, terminated, truncated, info = self.envs.step(action)
        # Next-step autoreset: after an ended episode this step is the reset (reward 0). The
        # running sums restart only where the game ended: under --episodic-life a lost life is
        # `terminated` for the learner while the game and its return go on (info["game_over"]).
        self.game_over = game_over(terminated, truncated, info)
        self.step = {
            "obs": obs,
            "reward": np.asarray(reward, np.float32),
            "terminated": np.asarray(terminated, bool),
            "truncated": np.asarray(truncated, bool),
            "episode_return": np.where(ended, 0.0, previous["episode_return"] + reward
                                       ).astype(np.float32),
            "episode_step": np.where(ended, 0, previous["episode_step"] + 1).astype(np.int32),
        }

    def _write(self, slot: dict[str, np.ndarray], t: int) -> None:
        assert self.agent is not None
        for key, value in self.step.items():
            slot[key][t] = value
        for key, value in self.agent.items():
            slot[key][t] = value

    def fill(self, slot: dict[str, np.ndarray], version: int) -> None:
        """Write one unroll: step 0 repeats the previous unroll's last step (agent output
        included, since its action is the one executed next), then T new steps."""
        if self.agent is None:
            self.agent = self._act(version)
        self._write(slot, 0)
        for t in range(1, self.unroll_length + 1):
            self._env_step(self.agent["action"])
            self.agent = self._act(version)
            self._write(slot, t)
