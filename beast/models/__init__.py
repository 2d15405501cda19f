"""Policy-value models; `build_model` picks one from the environment's spaces and the config."""

from __future__ import annotations

import gymnasium as gym
from torch import nn

from beast.config import ModelConfig
from beast.models.agent import AgentOutput, PolicyValueNet, act_step
from beast.models.atari import NATURE_MIN_SIZE, ImpalaResNet, NatureCNN, input_scale_for
from beast.models.mlp import MLPTorso, PolicyValueMLP
from beast.models.sampling import sample_actions

__all__ = ["AgentOutput", "PolicyValueMLP", "PolicyValueNet", "act_step", "build_model",
           "sample_actions"]

IMAGE_LSTM_SIZE = 256


def choose_torso(obs_shape: tuple[int, ...], torso: str) -> str:
    """`auto`: an MLP for flat observations; for [C, H, W] images the Nature CNN when the
    frame is large enough for its strides, else the IMPALA ResNet."""
    if torso != "auto":
        return torso
    if len(obs_shape) != 3:
        return "mlp"
    return "nature" if min(obs_shape[1:]) >= NATURE_MIN_SIZE else "resnet"


def build_model(observation_space: gym.Space, action_space: gym.Space,
                config: ModelConfig) -> nn.Module:
    """The model for these spaces: every model has `forward(obs, core_state, done)`,
    `initial_state(batch)` and `core_state_shape` (None for feed-forward models)."""
    if not isinstance(observation_space, gym.spaces.Box):
        raise ValueError(f"Beast models need a Box observation space, got {observation_space}")
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"Beast policies need a Discrete action space, got {action_space}")
    obs_shape, num_actions = tuple(observation_space.shape), int(action_space.n)
    kind = choose_torso(obs_shape, config.torso)
    if kind in ("nature", "resnet") and obs_shape[-1] <= 4 < obs_shape[0]:
        raise ValueError(f"image observations of shape {obs_shape} look channels-last; Beast's "
                         "image torsos take [C, H, W] (wrap the env with a transpose)")
    if kind == "mlp" and not config.use_lstm:
        return PolicyValueMLP(obs_shape, num_actions, config.hidden_sizes, config.activation,
                              config.shared_torso)
    if kind == "mlp":
        torso: nn.Module = MLPTorso(obs_shape, config.hidden_sizes, config.activation)
    elif len(obs_shape) != 3:
        raise ValueError(f"--torso {kind} needs [C, H, W] image observations, got shape {obs_shape}")
    elif kind == "nature":
        if min(obs_shape[1:]) < NATURE_MIN_SIZE:
            raise ValueError(f"--torso nature needs frames of at least {NATURE_MIN_SIZE}x{NATURE_MIN_SIZE}, "
                             f"got {obs_shape}; use --torso resnet")
        torso = NatureCNN(obs_shape, input_scale_for(observation_space))
    else:
        torso = ImpalaResNet(obs_shape, input_scale_for(observation_space))
    feature_size = torso.feature_size
    lstm_size = (feature_size if kind == "mlp" else IMAGE_LSTM_SIZE) if config.use_lstm else 0
    return PolicyValueNet(torso, feature_size, obs_shape, num_actions, lstm_size)
