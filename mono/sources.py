"""MonoBeast's batch sources: serial (actor in the learner's process) and parallel (processes).

Both produce [T+1, B*K, ...] batches from the same `UnrollWorker` stepping logic, so the
serial mode is the parallel mode minus processes: handy for debugging, tests, and on a
machine where one core is all there is.
"""

from __future__ import annotations

import copy
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

import time
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.config import Config
from beast.envs import make_vector_env_from_config
from beast.learner import Learner
from beast.rollout import RolloutSpec, stack_slots
from beast.mono.actor import UnrollWorker, actor_main, actor_seed
from beast.mono.runtime import ActorPool, forkserver_context
from beast.mono.shared import SharedRollouts, SharedWeights, SyncBoard
from beast.mono.sync import ActorSync
from beast.sync import controller_from_config


def _as_tensors(arrays: dict) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value) for key, value in arrays.items()}


class SerialSource:
    """Fills B unrolls in this process, then hands them to the learner: no queues, no copies
    of the weights when the learner runs on the CPU (the worker uses the learner's model)."""

    restarts = 0

    def __init__(self, config: Config, model: nn.Module, observation_space: gym.Space,
                 action_space: gym.Space, generation: int) -> None:
        on_cpu = config.run.device == "cpu"
        self.model = model if on_cpu else copy.deepcopy(model).cpu()
        self._copy_weights = not on_cpu
        envs = make_vector_env_from_config(config.env)
        self.worker = UnrollWorker(envs, self.model, config.run.unroll_length,
                                   actor_seed(config.run.seed, 0, generation))
        spec = RolloutSpec.from_spaces(observation_space, action_space, model.core_state_shape)
        self.slots = spec.allocate((config.run.batch_size, config.run.unroll_length + 1,
                                    config.env.num_envs))
        self.version = 0

    def next_batch(self, timeout: float) -> dict[str, torch.Tensor]:
        batch_size = len(next(iter(self.slots.values())))
        for index in range(batch_size):
            self.worker.fill({k: v[index] for k, v in self.slots.items()}, self.version)
        return _as_tensors(stack_slots(self.slots, list(range(batch_size))))

    def publish_weights(self, learner: Learner) -> None:
        if self._copy_weights:
            self.model.load_state_dict(learner.model.state_dict())
        self.version = learner.version

    def metrics(self) -> dict[str, float]:
        return {}  # the worker uses the learner's own weights: always in sync

    def close(self) -> None:
        self.worker.envs.close()


class ProcessSource:
    """Actor processes fill shared slots; this side stacks B full slots per batch.

    Actors start from `forkserver_context()` (see there for why).
    """

    def __init__(self, config: Config, model: nn.Module, observation_space: gym.Space,
                 action_space: gym.Space, generation: int, log: Callable[[str], None]) -> None:
        run = config.run
        self.batch_size = run.batch_size
        spec = RolloutSpec.from_spaces(observation_space, action_space, model.core_state_shape)
        self.rollouts = SharedRollouts.create(spec, run.num_actors * run.slots_per_actor,
                                              run.unroll_length, config.env.num_envs)
        self.weights = SharedWeights.create(model)
        self.board = SyncBoard.create(run.num_actors)
        self.sync = ActorSync(controller_from_config(config.sync, run.num_actors), self.board,
                              run.slots_per_actor, weight_bytes=4 * self.weights.handle.size)
        context = forkserver_context()

        def start_actor(actor_id: int, restart: int, free_slots: list[int]
                        ) -> tuple[BaseProcess, Connection]:
            self.sync.actor_started(actor_id, self.weights.version, time.monotonic())
            learner_end, actor_end = context.Pipe(duplex=True)
            process = context.Process(
                target=actor_main, name=f"beast-actor-{actor_id}", daemon=True,
                args=(actor_id, generation * 1000 + restart, config.env, run.unroll_length,
                      run.seed, config.model, self.rollouts.handle, self.weights.handle, self.board.handle,
                      free_slots, actor_end))
            process.start()
            actor_end.close()
            return process, learner_end

        self.pool = ActorPool(run.num_actors, run.slots_per_actor, start_actor,
                              run.max_actor_restarts, log)
        self.pool.start()
        self._pending: list[int] = []
        self._batch_slots: list[int] = []  # slots of the batch being learned from
        self._batch_versions = np.zeros(0, np.int64)  # the policy version of each
        self._num_envs = config.env.num_envs
        self._closed = False

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def next_batch(self, timeout: float) -> dict[str, torch.Tensor] | None:
        while len(self._pending) < self.batch_size:
            slot = self.pool.next_full(timeout)
            if slot is None:
                return None  # partial batches wait in _pending for the next call
            self._pending.append(slot)
        slots, self._pending = self._pending, []
        batch = stack_slots(self.rollouts.arrays, slots)
        self.pool.release(slots)
        self._batch_slots = slots
        self._batch_versions = batch["policy_version"][-1, ::self._num_envs]
        return _as_tensors(batch)

    def publish_weights(self, learner: Learner) -> None:
        """Publish to shared memory (cheap) and let the sync controller flag the actors that
        should copy (every-step, periodic or APS)."""
        self.weights.publish(learner.model, learner.version)
        self.sync.after_step(learner, self._batch_slots, self._batch_versions, time.monotonic())
        self._batch_slots = []

    def metrics(self) -> dict[str, float]:
        return self.sync.metrics()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool.close()
        self.rollouts.close()
        self.weights.close()
        self.board.close()
