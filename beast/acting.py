"""Acting, runtime-agnostic: one policy step for a batch of envs, and the unroll writer.

MonoBeast's actor processes and serial mode, PolyBeast's central inference and `--eval` all act
through `policy_step`, so the agent half of a rollout entry (beast.rollout.agent_fields) is
written by one function whatever the runtime:

    agent, next_state = policy_step(model, obs, core_state, done, generator, version)
    # agent: action, policy_params, baseline, policy_version [, core_state][, extras...]

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

from beast.models import act_step
from beast.rollout import CORE_STATE, game_over


@torch.inference_mode()
def policy_step(model: nn.Module, obs: torch.Tensor, core_state: torch.Tensor | None,
                done: torch.Tensor, generator: torch.Generator, version: int,
                greedy: bool = False) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """One step for B envs: the agent half of their entries ([B, ...] tensors) and the core
    state entering the next step. `core_state` is the state entering this step (recorded in the
    entry as the state it acted from); `done` [B]: o_t ended an episode. `greedy` takes the
    most likely action instead of sampling (evaluation only: training samples)."""
    output = act_step(model, obs, core_state, done)
    action = (model.dist.mode(output.policy_params) if greedy
              else model.dist.sample(output.policy_params, generator))
    agent = {"action": action, "policy_params": output.policy_params,
             "baseline": output.baseline,
             "policy_version": torch.full(output.baseline.shape, version, dtype=torch.int64)}
    if core_state is not None:
        agent[CORE_STATE] = core_state
    if output.extras:
        agent.update(output.extras)
    return agent, output.core_state


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
        self.core_state = model.initial_state(k)  # entering the current step; None if stateless

    def _act(self, version: int) -> dict[str, np.ndarray]:
        done = torch.from_numpy(self.step["terminated"] | self.step["truncated"])
        agent, self.core_state = policy_step(self.model, torch.from_numpy(self.step["obs"]),
                                             self.core_state, done, self.generator, version)
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
