"""MonoBeast's batch sources: serial (actor in the learner's process) and parallel (processes).

Both produce [T+1, B*K, ...] batches from the same `UnrollWorker` stepping logic
(beast.acting), so the serial mode is the parallel mode minus processes: handy for debugging,
tests, and on a machine where one core is all there is. Both count env steps and episodes
once per unroll produced (beast.rollout.EpisodeCounter).
"""

from __future__ import annotations

import copy
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Callable

import gymnasium as gym
import torch
from torch import nn

from beast.acting import UnrollWorker
from beast.config import Config
from beast.envs import make_vector_env_from_config
from beast.learner import Learner
from beast.rollout import Batch, EpisodeCounter, RolloutSpec, stack_slots
from beast.mono.actor import actor_main, actor_seed
from beast.mono.runtime import ActorPool, forkserver_context
from beast.mono.shared import SharedRollouts, SharedWeights, SyncBoard
from beast.sync import SyncDriver, controller_from_config


def _as_tensors(arrays: dict) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value) for key, value in arrays.items()}


class SerialSource:
    """Fills B unrolls in this process, then hands them to the learner: no queues, no copies
    of the weights when the learner runs on the CPU (the worker uses the learner's model)."""

    restarts = 0
    sync = None  # the worker acts with the learner's own weights: always in sync

    def __init__(self, config: Config, model: nn.Module, observation_space: gym.Space,
                 action_space: gym.Space, generation: int) -> None:
        on_cpu = config.run.device == "cpu"
        self.model = model if on_cpu else copy.deepcopy(model).cpu()
        self._copy_weights = not on_cpu
        envs = make_vector_env_from_config(config.env)
        self.worker = UnrollWorker(envs, self.model, config.run.unroll_length,
                                   actor_seed(config.run.seed, 0, generation))
        spec = RolloutSpec.build(observation_space, model)
        self.slots = spec.allocate((config.run.batch_size, config.run.unroll_length + 1,
                                    config.env.num_envs))
        self.counter = EpisodeCounter()
        self.version = 0

    def next_batch(self, timeout: float) -> Batch | None:
        """B fresh unrolls, acted now; None for a poll (timeout 0): acting takes time, so
        none is ever ready at once (a reuse buffer then hands out a buffered batch)."""
        if timeout <= 0:
            return None
        batch_size = len(next(iter(self.slots.values())))
        for index in range(batch_size):
            self.worker.fill({k: v[index] for k, v in self.slots.items()}, self.version)
        arrays = stack_slots(self.slots, list(range(batch_size)))
        self.counter.add(arrays)
        return Batch(_as_tensors(arrays))

    def publish_weights(self, learner: Learner) -> None:
        if self._copy_weights:
            self.model.load_state_dict(learner.model.state_dict())
        self.version = learner.version

    def metrics(self) -> dict[str, float]:
        return {}

    def close(self) -> None:
        self.worker.envs.close()


class ProcessSource:
    """Actor processes fill shared slots; this side stacks B full slots per batch.

    Each actor is one policy copy for the sync driver: it copies the published weights when
    its flag on the shared board is raised. Actors start from `forkserver_context()` (see
    there for why).
    """

    def __init__(self, config: Config, model: nn.Module, observation_space: gym.Space,
                 action_space: gym.Space, generation: int, log: Callable[[str], None]) -> None:
        run, mono = config.run, config.mono
        self.batch_size = run.batch_size
        self.slots_per_actor = mono.slots_per_actor
        spec = RolloutSpec.build(observation_space, model)
        self.rollouts = SharedRollouts.create(spec, run.num_actors * mono.slots_per_actor,
                                              run.unroll_length, config.env.num_envs)
        self.weights = SharedWeights.create(model)
        self.board = board = SyncBoard.create(run.num_actors)
        self.sync = SyncDriver(controller_from_config(config.sync, run.num_actors),
                               weight_bytes=4 * self.weights.handle.size,
                               held_version=board.version, request=board.raise_flag,
                               pending=board.flagged)
        self.counter = EpisodeCounter()
        context = forkserver_context()

        def start_actor(actor_id: int, restart: int, free_slots: list[int]
                        ) -> tuple[BaseProcess, Connection]:
            board.reset(actor_id)
            self.sync.copy_started(actor_id, self.weights.version, time.monotonic())
            learner_end, actor_end = context.Pipe(duplex=True)
            process = context.Process(
                target=actor_main, name=f"beast-actor-{actor_id}", daemon=True,
                args=(actor_id, generation * 1000 + restart, config.env, run.unroll_length,
                      run.seed, config.model, config.memory,
                      getattr(model, "memory_reader", None), self.rollouts.handle,
                      self.weights.handle,
                      board.handle, free_slots, actor_end))
            process.start()
            actor_end.close()
            return process, learner_end

        self.pool = ActorPool(run.num_actors, mono.slots_per_actor, start_actor,
                              mono.max_actor_restarts, log, mono.actor_timeout)
        self.pool.start()
        self._pending: list[int] = []
        self._closed = False

    @property
    def restarts(self) -> int:
        return self.pool.restarts

    def next_batch(self, timeout: float) -> Batch | None:
        while len(self._pending) < self.batch_size:
            slot = self.pool.next_full(timeout)
            if slot is None:
                return None  # partial batches wait in _pending for the next call
            self._pending.append(slot)
        slots, self._pending = self._pending, []
        arrays = stack_slots(self.rollouts.arrays, slots)
        self.pool.release(slots)
        self.counter.add(arrays)
        return Batch(_as_tensors(arrays), tuple(s // self.slots_per_actor for s in slots))

    def publish_weights(self, learner: Learner) -> None:
        """Publish to shared memory (one memcpy); actors copy when the sync driver flags them."""
        self.weights.publish(learner.model, learner.version)

    def metrics(self) -> dict[str, float]:
        """Sync counters for a log row (copies actually made, as counted by the actors)."""
        return self.sync.metrics(int(self.board.table[:, SyncBoard.SYNCS].sum()))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool.close()
        self.rollouts.close()
        self.weights.close()
        self.board.close()
