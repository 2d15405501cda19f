"""The episodic memory in the agent (beast.models.agent, beast.acting, beast.learner): off, the
agent is the plain one bit for bit; on, the core reads the last action, the reward and the
memory's readout, actors record what they read, and the learner replays the stored readouts.

Unit level, in-process; tests/test_memory_runtimes.py takes the same checks through the
runtimes."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import beast  # noqa: F401  (registers ZipfGridworld-v0)
from beast.acting import UnrollWorker, carry_keys
from beast.config import Config, EnvConfig, ModelConfig, RunConfig
from beast.envs import make_vector_env
from beast.learner import Learner
from beast.memory import MemoryConfig, encode_keys, knn_readout
from beast.memory.feed import build_memory
from beast.models import build_model
from beast.objectives import build_objective
from beast.objectives.base import run_model
from beast.rollout import LAST_ACTION, MEM_READOUT, RolloutSpec

T, K = 6, 4
LSTM = ModelConfig(hidden_sizes=(16,), use_lstm=True)
MEMORY = MemoryConfig(episodic_memory=True, memory_capacity=16, memory_buffer_size=48,
                      memory_refresh_every=1, memory_epochs=1, memory_batch_size=16,
                      memory_samples_per_step=16, memory_insert_fraction=0.5)


def spaces(env_id: str) -> tuple[gym.Space, gym.Space]:
    envs = make_vector_env(env_id, 1)
    try:
        return envs.single_observation_space, envs.single_action_space
    finally:
        envs.close()


def test_with_the_memory_off_the_agent_is_the_plain_one_bit_for_bit() -> None:
    obs_space, action_space = spaces("ZipfGridworld-v0")
    torch.manual_seed(3)
    plain = build_model(obs_space, action_space, LSTM)
    torch.manual_seed(3)
    off = build_model(obs_space, action_space, LSTM,
                      MemoryConfig(episodic_memory=False, memory_key_size=8, memory_top_k=2))
    assert plain.state_dict().keys() == off.state_dict().keys()
    assert all(torch.equal(v, off.state_dict()[k]) for k, v in plain.state_dict().items())
    assert RolloutSpec.build(obs_space, plain) == RolloutSpec.build(obs_space, off)
    assert carry_keys(off) == ["core_state"] and off.extra_outputs == {}
    obs = torch.rand(T, K, *obs_space.shape)
    done = torch.rand(T, K) < 0.3
    state = torch.randn(K, *plain.core_state_shape)
    a, b = plain(obs, state, done), off(obs, state, done)
    assert torch.equal(a.policy_params, b.policy_params) and torch.equal(a.baseline, b.baseline)
    assert torch.equal(a.core_state, b.core_state) and b.extras is None


def fill(worker: UnrollWorker, spec: RolloutSpec, unrolls: int) -> list[dict[str, np.ndarray]]:
    out = []
    for _ in range(unrolls):
        slot = spec.allocate((T + 1, K))
        worker.fill(slot, 0)
        out.append(slot)
    return out


def test_the_last_action_is_carried_and_cleared_where_an_episode_starts() -> None:
    obs_space, action_space = spaces("CartPole-v1")
    model = build_model(obs_space, action_space,
                        ModelConfig(hidden_sizes=(8,), use_lstm=True, last_action_reward=True))
    assert model.step_inputs == ("reward", LAST_ACTION)
    spec = RolloutSpec.build(obs_space, model)
    assert spec.fields[LAST_ACTION].shape == (2,)
    envs = make_vector_env("CartPole-v1", K)
    unrolls = fill(UnrollWorker(envs, model, T, seed=1), spec, 4)
    envs.close()
    previous = None
    for unroll in unrolls:
        if previous is None:
            assert not unroll[LAST_ACTION][0].any()  # a fresh session starts from zeros
        else:  # step 0 repeats the last step of the unroll before, its carry included
            assert np.array_equal(unroll[LAST_ACTION][0], previous[LAST_ACTION][T])
        done = unroll["terminated"] | unroll["truncated"]
        for t in range(1, T + 1):
            expected = np.eye(2, dtype=np.float32)[unroll["action"][t - 1]]
            expected[done[t - 1]] = 0.0  # o_{t-1} ended its episode: o_t starts one
            assert np.array_equal(unroll[LAST_ACTION][t], expected)
        previous = unroll
    assert any((u["terminated"] | u["truncated"])[:-1].any() for u in unrolls)  # a reset was seen


def memory_agent(seed: int = 0):
    obs_space, action_space = spaces("ZipfGridworld-v0")
    torch.manual_seed(seed)
    model = build_model(obs_space, action_space, LSTM, MEMORY)
    trainer = build_memory(MEMORY, model, discount=0.9, seed=seed)
    model.memory_reader = trainer.reader()
    return model, trainer, RolloutSpec.build(obs_space, model)


def batch_of(unrolls: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.concatenate([u[k] for u in unrolls], axis=1))
            for k in unrolls[0]}


def test_actors_record_the_readout_they_read_and_the_learner_replays_it() -> None:
    model, trainer, spec = memory_agent()
    assert spec.fields[MEM_READOUT].shape == (model.core_inputs.memory_readout,)
    learner = Learner(model, build_objective(Config().loss, model), Config().optim, 10**6,
                      memory=trainer)
    envs = make_vector_env("ZipfGridworld-v0", K)
    worker = UnrollWorker(envs, model, T, seed=2)
    empty = batch_of(fill(worker, spec, 1))
    assert not empty[MEM_READOUT].any()  # zeros while the memory is empty
    for _ in range(4):  # each step feeds the memory and refreshes it (R = 1)
        learner.step(batch_of(fill(worker, spec, 2)), 0)
    assert trainer.memory.store.valid.any()
    fill(worker, spec, 1)  # its last step, the next unroll's step 0, is acted as now
    batch = batch_of(fill(worker, spec, 2))  # acted with these weights and this memory
    envs.close()
    # What the actor recorded is the k-NN readout of its own key of each observation...
    with torch.no_grad():
        features = model.torso(batch["obs"].flatten(0, 1))
        store = trainer.memory.store
        expected = knn_readout(store.key, store.value, store.valid,
                               encode_keys(model.memory_key, features), MEMORY.memory_top_k,
                               MEMORY.memory_readout_temperature)
    readout = batch[MEM_READOUT].flatten(0, 1)
    assert readout[:, -1].min() > 0  # the fill ratio: the memory was read, not zeros
    torch.testing.assert_close(readout, expected)
    # ...and the learner replays it: the same outputs without the reader (it is not queried)
    model.memory_reader = None
    with torch.no_grad():
        replay = run_model(model, batch)
        torch.testing.assert_close(replay.policy_params, batch["policy_params"])
        torch.testing.assert_close(replay.baseline, batch["baseline"])
        # a different stored readout changes the learner's outputs: it is read, not recomputed
        other = dict(batch, **{MEM_READOUT: torch.zeros_like(batch[MEM_READOUT])})
        assert not torch.allclose(run_model(model, other).policy_params, replay.policy_params)


def test_the_learner_checkpoints_the_memory_and_trains_only_the_rl_weights_itself() -> None:
    model, trainer, spec = memory_agent()
    learner = Learner(model, build_objective(Config().loss, model), Config().optim, 10**6,
                      memory=trainer)
    key_params = {id(p) for p in model.memory_key.parameters()}
    assert not key_params & {id(p) for p in learner.parameters}  # the memory trains g
    envs = make_vector_env("ZipfGridworld-v0", K)
    worker = UnrollWorker(envs, model, T, seed=2)
    for _ in range(3):
        metrics = learner.step(batch_of(fill(worker, spec, 2)), 0).metrics
    envs.close()
    assert metrics["memory/fill"] > 0 and "memory/contrastive_loss" in metrics
    state = learner.state_dict()
    fresh_model, fresh_trainer, _ = memory_agent(seed=1)
    fresh = Learner(fresh_model, build_objective(Config().loss, fresh_model), Config().optim,
                    10**6, memory=fresh_trainer)
    fresh.load_state_dict(state)
    for name in ("key", "value", "priority", "valid"):
        assert torch.equal(getattr(fresh_trainer.memory.store, name),
                           getattr(trainer.memory.store, name))


def test_the_memory_and_its_inputs_need_an_lstm_and_a_cpu_learner() -> None:
    with pytest.raises(ValueError, match="add --use-lstm"):
        Config(memory=MemoryConfig(episodic_memory=True))
    with pytest.raises(ValueError, match="add --use-lstm"):
        Config(model=ModelConfig(last_action_reward=True))
    with pytest.raises(ValueError, match="--device cpu"):
        Config(model=LSTM, memory=MEMORY, run=RunConfig(device="cuda"))
    with pytest.raises(ValueError, match="--eval-every"):
        Config.from_dict({"model": {"use_lstm": True}, "memory": {"episodic_memory": True},
                          "eval": {"eval_every": 1000}})
    # a model that does not read the memory is refused before the run starts
    obs_space, action_space = spaces("ZipfGridworld-v0")
    with pytest.raises(ValueError, match="--episodic-memory needs a recurrent model"):
        build_memory(MEMORY, build_model(obs_space, action_space, LSTM), 0.9, 0)
    assert Config(env=EnvConfig("ZipfGridworld-v0"), model=LSTM, memory=MEMORY).memory is MEMORY
