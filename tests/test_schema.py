"""The one rollout schema: built from the env's spaces and what the model declares, it drives
MonoBeast's workers and PolyBeast's C++ actor pool alike, so a model's extra per-step output
reaches the learner's batch exactly in both runtimes, with no C++ change."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from beast.config import Config, EnvConfig, ModelConfig, RunConfig
from beast.learner import Learner
from beast.objectives import build_objective
from beast.rollout import ENV_KEYS, RolloutSpec
from beast.training import build_env_model
from tests.envs.extra_model import extra_of

REPO = Path(__file__).resolve().parents[1]
COUNTING = "tests.envs.counting_env:Counting-v0"


def extra_config(num_actors: int) -> Config:
    return Config(env=EnvConfig(COUNTING, num_envs=3),
                  model=ModelConfig(hidden_sizes=(8,), model_factory="tests.envs.extra_model:build"),
                  run=RunConfig(num_actors=num_actors, unroll_length=5, batch_size=1))


def first_batch(source_class, config: Config) -> dict[str, torch.Tensor]:
    model, obs_space, action_space = build_env_model(config)
    learner = Learner(model, build_objective(config.loss, model), config.optim, 10**6)
    if source_class.__name__ == "SerialSource":
        source = source_class(config, model, obs_space, action_space, 0)
    else:
        source = source_class(config, model, obs_space, action_space, 0, lambda message: None)
    try:
        source.publish_weights(learner)
        batch = None
        for _ in range(100):
            batch = source.next_batch(timeout=0.5)
            if batch is not None:
                break
        assert batch is not None, "no batch within 50 s"
        return batch.data
    finally:
        source.close()


def check_extra(data: dict[str, torch.Tensor]) -> None:
    assert data["extra"].shape == (6, 3, 3) and data["extra"].dtype == torch.float32
    torch.testing.assert_close(data["extra"], extra_of(data["obs"]), rtol=0, atol=0)
    assert not torch.isnan(data["extra"]).any()


def test_the_schema_comes_from_the_spaces_and_the_model() -> None:
    model, obs_space, _ = build_env_model(extra_config(0))
    spec = RolloutSpec.build(obs_space, model)
    assert set(spec.fields) == {*ENV_KEYS, "action", "policy_params", "baseline",
                                "policy_version", "extra"}
    assert spec.agent["extra"].shape == (3,)
    assert spec.agent["policy_params"].shape == (3,)  # Discrete(3): three logits
    assert set(spec.agent).isdisjoint(ENV_KEYS)


@pytest.mark.parametrize("runtime", ["serial", "processes", "poly"])
def test_an_extra_model_output_reaches_the_learner_batch_exactly(runtime: str) -> None:
    if runtime == "poly":
        from beast.poly.sources import PolySource as source_class
    elif runtime == "serial":
        from beast.mono.sources import SerialSource as source_class
    else:
        from beast.mono.sources import ProcessSource as source_class
    check_extra(first_batch(source_class, extra_config(0 if runtime == "serial" else 1)))


def test_no_cpp_file_names_an_agent_key() -> None:
    """The C++ actor pool takes the agent half as data (key -> dtype, shape)."""
    keys = ("policy_params", "policy_logits", "baseline", "policy_version", "core_state")
    for path in (REPO / "csrc").rglob("*"):
        if path.suffix in (".h", ".cc"):
            literals = re.findall(r'"([^"\\]*)"', path.read_text())
            assert not set(literals) & set(keys), f"{path} names {set(literals) & set(keys)}"
