"""IMPACT's circular buffer (beast.replay) on the real sources: a buffered batch keeps its
content while the source goes on producing and the learner trains on it, since every source
hands out batches it never writes again and the buffer does not copy them. Polls (timeout 0)
return whole batches only, and the serial source, which acts only when waited on, has each
batch used exactly K times."""

from __future__ import annotations

import time

import pytest
import torch

from beast.config import Config, EnvConfig, ModelConfig, MonoConfig, RunConfig
from beast.learner import Learner
from beast.objectives import build_objective
from beast.replay import ReuseBuffer
from beast.training import build_env_model

T, K, B = 4, 2, 2  # unroll length, envs per unroll, unrolls per batch


def make_source(runtime: str, config: Config, model, obs_space, action_space):
    if runtime == "serial":
        from beast.mono.sources import SerialSource
        return SerialSource(config, model, obs_space, action_space, 0)
    if runtime == "processes":
        from beast.mono.sources import ProcessSource as source_class
    else:
        from beast.poly.sources import PolySource as source_class
    return source_class(config, model, obs_space, action_space, 0, lambda message: None)


@pytest.mark.parametrize("runtime", ["serial", "processes", "poly"])
def test_a_buffered_batch_keeps_its_content(runtime: str) -> None:
    config = Config(env=EnvConfig("CartPole-v1", num_envs=K), model=ModelConfig(hidden_sizes=(8,)),
                    run=RunConfig(num_actors=0 if runtime == "serial" else 1, unroll_length=T,
                                  batch_size=B),
                    mono=MonoConfig(slots_per_actor=B + 1))
    model, obs_space, action_space = build_env_model(config)
    learner = Learner(model, build_objective(config.loss, model), config.optim, 10**6)
    # Serial: each batch is used K times before the next is acted. Parallel: the buffer never
    # empties, so batches are reused while the actors write new ones.
    max_uses = 2 if runtime == "serial" else 1000
    buffer = ReuseBuffer(make_source(runtime, config, model, obs_space, action_space),
                         capacity=2, max_uses=max_uses)
    kept: dict[int, tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = {}
    uses: dict[int, int] = {}
    deadline = time.monotonic() + 60
    try:
        buffer.publish_weights(learner)
        while len(kept) < 4 or sum(uses.values()) - len(kept) < 4:
            assert time.monotonic() < deadline, f"{len(kept)} batches, {sum(uses.values())} uses"
            batch = buffer.next_batch(timeout=0.5)
            if batch is None:
                continue
            key = id(batch.data)  # unique: every handed data dict is kept alive in `kept`
            uses[key] = uses.get(key, 0) + 1
            if key in kept:
                check(*kept[key])
            else:  # the learner trains on a batch's first use only: reuses must not wait
                assert batch.data["reward"].shape == (T + 1, B * K)  # never a partial batch
                kept[key] = batch.data, {k: v.clone() for k, v in batch.data.items()}
                result = learner.step(batch.data, buffer.counter.env_steps)
                buffer.publish_weights(learner)
            if buffer.sync is not None:  # as beast.training does: owners only on a first use
                assert bool(batch.owners) == (uses[key] == 1)
                buffer.sync.after_step(result, batch.owners, batch.data["policy_version"],
                                       learner.version, time.monotonic())
        for data, snapshot in kept.values():  # the source went on after each but the last
            check(data, snapshot)
        assert buffer.counter.env_steps == len(kept) * T * B * K  # once, not once per use
    finally:
        buffer.close()
    if runtime == "serial":
        assert list(uses.values()) == [max_uses] * len(kept)


def check(data: dict[str, torch.Tensor], snapshot: dict[str, torch.Tensor]) -> None:
    for name, value in snapshot.items():
        torch.testing.assert_close(data[name], value, rtol=0, atol=0, equal_nan=True, msg=name)
