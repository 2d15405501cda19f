"""Policy-value models; `build_model` picks one from the environment's spaces and the config."""

from __future__ import annotations

import gymnasium as gym
from torch import nn

from beast.config import ModelConfig
from beast.distributions import action_distribution
from beast.envs.spaces import PackedBox, observation_space_error
from beast.models.agent import AgentOutput, PolicyValueNet, act_step
from beast.models.atari import NATURE_MIN_SIZE, ImpalaResNet, NatureCNN, input_scale_for
from beast.models.encoders import EntryTorso, FlatEncoder, has_image_entry
from beast.models.mlp import MLPTorso, PolicyValueMLP, mlp_layers

__all__ = ["AgentOutput", "PolicyValueMLP", "PolicyValueNet", "act_step", "build_model"]

IMAGE_LSTM_SIZE = 256


def choose_torso(obs_shape: tuple[int, ...], torso: str) -> str:
    """`auto`: an MLP for flat observations; for [C, H, W] images the Nature CNN when the
    frame is large enough for its strides, else the IMPALA ResNet."""
    if torso != "auto":
        return torso
    if len(obs_shape) != 3:
        return "mlp"
    return "nature" if min(obs_shape[1:]) >= NATURE_MIN_SIZE else "resnet"


def _image_torso(kind: str, obs_shape: tuple[int, ...], space: gym.spaces.Box) -> nn.Module:
    if len(obs_shape) != 3:
        raise ValueError(f"--torso {kind} needs [C, H, W] image observations, got shape {obs_shape}")
    if kind == "nature":
        if min(obs_shape[1:]) < NATURE_MIN_SIZE:
            raise ValueError(f"--torso nature needs frames of at least {NATURE_MIN_SIZE}x{NATURE_MIN_SIZE}, "
                             f"got {obs_shape}; use --torso resnet")
        return NatureCNN(obs_shape, input_scale_for(space))
    return ImpalaResNet(obs_shape, input_scale_for(space))


def _entry_torso(space: PackedBox, config: ModelConfig) -> EntryTorso:
    """Dict / Tuple observations with image entries: one CNN per image, one MLP for the rest."""
    def image(shape: tuple[int, int, int], entry: gym.spaces.Box) -> nn.Module:
        kind = config.torso if config.torso in ("nature", "resnet") else choose_torso(shape, "auto")
        return _image_torso(kind, shape, entry)

    return EntryTorso(space, image, lambda size: mlp_layers(size, config.hidden_sizes, config.activation),
                      config.hidden_sizes[-1])


def build_model(observation_space: gym.Space, action_space: gym.Space,
                config: ModelConfig) -> nn.Module:
    """The model for these spaces: every model has `forward(obs, core_state, done)`,
    `initial_state(batch)`, `core_state_shape` (None for feed-forward models), `dist` and
    `extra_outputs` (beast.models.agent). Observations arrive as the env adapters serve them
    (beast.envs.spaces: structured spaces packed into a PackedBox)."""
    reason = observation_space_error(observation_space)
    if reason is not None:
        raise ValueError(reason)
    if not isinstance(observation_space, gym.spaces.Box):
        observation_space = PackedBox(observation_space)
    dist = action_distribution(action_space)
    obs_shape = tuple(observation_space.shape)
    lstm = config.use_lstm
    if has_image_entry(observation_space):
        torso: nn.Module = _entry_torso(observation_space, config)
        return PolicyValueNet(torso, torso.feature_size, obs_shape, dist,
                              IMAGE_LSTM_SIZE if lstm else 0)
    kind = "mlp" if isinstance(observation_space, PackedBox) else choose_torso(obs_shape, config.torso)
    if kind in ("nature", "resnet") and obs_shape[-1] <= 4 < obs_shape[0]:
        raise ValueError(f"image observations of shape {obs_shape} look channels-last; Beast's "
                         "image torsos take [C, H, W] (wrap the env with a transpose)")
    if kind == "mlp":
        encoder = FlatEncoder(observation_space)
        if not lstm:
            return PolicyValueMLP(encoder, obs_shape, dist, config.hidden_sizes, config.activation,
                                  config.shared_torso)
        torso = MLPTorso(encoder, config.hidden_sizes, config.activation)
        return PolicyValueNet(torso, torso.feature_size, obs_shape, dist, torso.feature_size)
    torso = _image_torso(kind, obs_shape, observation_space)
    return PolicyValueNet(torso, torso.feature_size, obs_shape, dist, IMAGE_LSTM_SIZE if lstm else 0)
