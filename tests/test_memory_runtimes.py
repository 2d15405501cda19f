"""The episodic memory through every runtime: MonoBeast's serial mode, its actor processes
(which read the learner's banks in shared memory) and PolyBeast (whose inference thread reads
them in-process). In each, the `mem_readout` a batch carries is the k-NN readout of the
learner's store for the actor's own key of each observation, and the learner's replay of the
batch reproduces the actor's outputs from those stored readouts."""

from __future__ import annotations

import time

import pytest
import torch

import beast  # noqa: F401  (registers ZipfGridworld-v0)
from beast.config import Config, EnvConfig, ModelConfig, MonoConfig, RunConfig
from beast.learner import Learner
from beast.memory import MemoryConfig, encode_keys, knn_readout
from beast.memory.feed import build_memory
from beast.objectives import build_objective
from beast.objectives.base import run_model
from beast.rollout import MEM_READOUT
from beast.training import build_env_model
from tests.test_replay_runtimes import make_source

T, K, B = 6, 4, 2
MEMORY = MemoryConfig(episodic_memory=True, memory_capacity=16, memory_buffer_size=48,
                      memory_refresh_every=1, memory_epochs=1, memory_batch_size=16,
                      memory_samples_per_step=16, memory_insert_fraction=0.5)


@pytest.mark.parametrize("runtime", ["serial", "processes", "poly"])
def test_every_runtime_carries_the_readout_its_actors_read(runtime: str) -> None:
    config = Config(env=EnvConfig("ZipfGridworld-v0", num_envs=K),
                    model=ModelConfig(hidden_sizes=(16,), use_lstm=True), memory=MEMORY,
                    run=RunConfig(num_actors=0 if runtime == "serial" else 1, unroll_length=T,
                                  batch_size=B),
                    mono=MonoConfig(slots_per_actor=B + 1))
    model, obs_space, action_space = build_env_model(config)
    trainer = build_memory(config.memory, model, config.loss.discount, seed=0)
    model.memory_reader = trainer.reader()
    learner = Learner(model, build_objective(config.loss, model), config.optim, 10**6,
                      memory=trainer)
    source = make_source(runtime, config, model, obs_space, action_space)
    deadline = time.monotonic() + 90
    try:
        source.publish_weights(learner)
        while learner.version < 4:  # each step feeds and refreshes the memory (R = 1)
            assert time.monotonic() < deadline
            if (batch := source.next_batch(timeout=0.5)) is not None:
                result = learner.step(batch.data, 0)
                source.publish_weights(learner)
                if source.sync is not None:
                    source.sync.after_step(result, batch.owners, batch.data["policy_version"],
                                           learner.version, time.monotonic())
        assert trainer.memory.store.valid.any()
        # No more steps: wait for a batch acted wholly with these weights and this memory.
        while True:
            assert time.monotonic() < deadline, "no batch acted with the final weights"
            batch = source.next_batch(timeout=0.5)
            if batch is not None and bool((batch.data["policy_version"] == learner.version).all()):
                break
    finally:
        source.close()
    data = batch.data
    with torch.no_grad():
        store = trainer.memory.store
        keys = encode_keys(model.memory_key, model.torso(data["obs"].flatten(0, 1)))
        expected = knn_readout(store.key, store.value, store.valid, keys, MEMORY.memory_top_k,
                               MEMORY.memory_readout_temperature)
        readout = data[MEM_READOUT].flatten(0, 1)
        assert readout[:, -1].min() > 0  # the fill ratio: every step read a non-empty memory
        torch.testing.assert_close(readout, expected)
        model.memory_reader = None  # the learner does not query the memory: it replays
        replay = run_model(model, data)
    torch.testing.assert_close(replay.policy_params, data["policy_params"])
    torch.testing.assert_close(replay.baseline, data["baseline"])
