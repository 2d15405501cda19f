"""MonoBeast actor processes: K environments stepped together with one batched policy call per step.

The stepping logic is beast.acting.UnrollWorker (the serial mode uses it in-process);
`actor_main` wraps it in a process that fills shared slots and talks to the learner over its
own pipe:

    learner → actor:  int slot index (free again) | None (stop)
    actor → learner:  int slot index (full)       | ("error", traceback text)
"""

from __future__ import annotations

import collections
import signal
import traceback
from multiprocessing.connection import Connection

import torch

from beast.acting import UnrollWorker
from beast.config import EnvConfig, ModelConfig
from beast.envs import make_vector_env_from_config
from beast.memory.banks import MemoryReader
from beast.memory.config import MemoryConfig
from beast.models.factory import build_configured_model
from beast.mono.shared import (RolloutHandle, SharedRollouts, SharedWeights, SyncBoard,
                               SyncBoardHandle, WeightsHandle)


def actor_seed(base_seed: int, actor_id: int, generation: int) -> int:
    """Distinct seeds per actor and per restart, so a restarted actor does not replay."""
    return base_seed * 1_000_003 + actor_id * 10_007 + generation * 7_919_993


def actor_main(actor_id: int, generation: int, env_config: EnvConfig, unroll_length: int,
               seed: int, model_config: ModelConfig, memory_config: MemoryConfig,
               memory_reader: MemoryReader | None, rollouts_handle: RolloutHandle,
               weights_handle: WeightsHandle, board_handle: SyncBoardHandle,
               free_slots: list[int], conn: Connection) -> None:
    """Process entry point: fill free slots until told to stop or the learner goes away.

    Weights are copied only when the learner's sync controller raised this actor's flag
    (checked at each unroll boundary); the first copy is awaited before acting at all.
    With the episodic memory, `memory_reader` reads the learner's shared banks (the newest
    publication, whatever the weights' version).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    torch.set_num_threads(1)
    try:
        rollouts = SharedRollouts.attach(rollouts_handle)
        weights = SharedWeights.attach(weights_handle)
        board = SyncBoard.attach(board_handle)
        envs = make_vector_env_from_config(env_config)
        model = build_configured_model(envs.single_observation_space, envs.single_action_space,
                                       model_config, memory_config)
        if memory_reader is not None:
            model.memory_reader = memory_reader
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
