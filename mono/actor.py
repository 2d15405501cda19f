"""MonoBeast actors: K environments stepped together with one batched policy call per step.

`UnrollWorker` is the stepping logic alone (used in-process by the serial mode and the
benchmark); `actor_main` wraps it in a process that fills shared slots and talks to the
learner over its own pipe:

    learner → actor:  int slot index (free again) | None (stop)
    actor → learner:  int slot index (full)       | ("error", traceback text)
"""

from __future__ import annotations

import collections
import signal
import traceback
from multiprocessing.connection import Connection

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.config import EnvConfig, ModelConfig
from beast.envs import make_vector_env_from_config
from beast.models import act_step, build_model, sample_actions
from beast.rollout import game_over
from beast.mono.shared import (RolloutHandle, SharedRollouts, SharedWeights, SyncBoard,
                               SyncBoardHandle, WeightsHandle)


class UnrollWorker:
    """Steps a vector env with a policy and writes [T+1, K] unrolls (see beast.rollout).

    Call loop::

        worker = UnrollWorker(envs, model, unroll_length=T, seed=s)
        while running:
            worker.fill(slot_views, policy_version)   # writes steps 0..T of one unroll
    """

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

    @torch.inference_mode()
    def _act(self, version: int) -> dict[str, np.ndarray]:
        done = torch.from_numpy(self.step["terminated"] | self.step["truncated"])
        acted_from = self.core_state
        output = act_step(self.model, torch.from_numpy(self.step["obs"]), acted_from, done)
        self.core_state = output.core_state
        action = sample_actions(output.policy_logits, self.generator)
        agent = {"action": action.numpy(), "policy_logits": output.policy_logits.numpy(),
                 "baseline": output.baseline.numpy(),
                 "policy_version": np.full(action.shape, version, np.int64)}
        if acted_from is not None:
            agent["core_state"] = acted_from.numpy()
        return agent

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


def actor_seed(base_seed: int, actor_id: int, generation: int) -> int:
    """Distinct seeds per actor and per restart, so a restarted actor does not replay."""
    return base_seed * 1_000_003 + actor_id * 10_007 + generation * 7_919_993


def actor_main(actor_id: int, generation: int, env_config: EnvConfig, unroll_length: int,
               seed: int, model_config: ModelConfig, rollouts_handle: RolloutHandle,
               weights_handle: WeightsHandle, board_handle: SyncBoardHandle,
               free_slots: list[int], conn: Connection) -> None:
    """Process entry point: fill free slots until told to stop or the learner goes away.

    Weights are copied only when the learner's sync controller raised this actor's flag
    (checked at each unroll boundary); the first copy is awaited before acting at all.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    torch.set_num_threads(1)
    try:
        rollouts = SharedRollouts.attach(rollouts_handle)
        weights = SharedWeights.attach(weights_handle)
        board = SyncBoard.attach(board_handle)
        envs = make_vector_env_from_config(env_config)
        model = build_model(envs.single_observation_space, envs.single_action_space, model_config)
        worker = UnrollWorker(envs, model, unroll_length, actor_seed(seed, actor_id, generation))
        free = collections.deque(free_slots)
        while not (board.flagged(actor_id) and weights.version >= 0):  # never act with our init
            if conn.poll(0.01):
                message = conn.recv()
                if message is None:
                    return
                free.append(message)
        version = -1
        while True:
            while not free or conn.poll():
                message = conn.recv()
                if message is None:
                    return
                free.append(message)
            if board.flagged(actor_id):
                version = weights.read_into(model)
                board.synced(actor_id, version)
            slot = free.popleft()
            worker.fill(rollouts.slot(slot), version)
            conn.send(slot)
    except (EOFError, BrokenPipeError):
        return  # the learner is gone; nothing to report to
    except BaseException:
        try:
            conn.send(("error", f"actor {actor_id}: {traceback.format_exc()}"))
        finally:
            raise SystemExit(1)
