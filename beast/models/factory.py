"""The model a run trains: Beast's `build_model`, or the researcher's own `--model-factory`.

    model = build_configured_model(observation_space, action_space, config.model, config.memory)

A factory is named `module:function` and called as `function(observation_space,
action_space, model_config)`. It must return a model with Beast's interface (see
beast.models.agent: `dist`, `core_state_shape`, `extra_outputs`, `initial_state`, and
`forward(obs, core_state, done) -> AgentOutput`). Actors, the learner and `--eval` all build
their copy here, so a custom model is the same in every process.
"""

from __future__ import annotations

import importlib

import gymnasium as gym
from torch import nn

from beast.config import ModelConfig
from beast.memory.config import MemoryConfig
from beast.models import build_model

REQUIRED = ("dist", "core_state_shape", "extra_outputs", "initial_state")


def build_configured_model(observation_space: gym.Space, action_space: gym.Space,
                           config: ModelConfig, memory: MemoryConfig | None = None) -> nn.Module:
    """`memory` (the run's episodic-memory group) reaches Beast's model only; a factory's
    model that wants the memory builds its core inputs itself (beast.models.core_inputs)."""
    if config.model_factory is None:
        return build_model(observation_space, action_space, config, memory)
    module_name, _, function_name = config.model_factory.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"--model-factory {config.model_factory}: cannot load it ({exc})") from exc
    model = factory(observation_space, action_space, config)
    missing = [name for name in REQUIRED if not hasattr(model, name)]
    if missing:
        raise ValueError(f"--model-factory {config.model_factory} returned a model without "
                         f"{', '.join(missing)} (see beast.models.agent)")
    return model
