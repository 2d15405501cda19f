"""Policy-value models; `build_model` picks one from the environment's spaces and the config."""

from __future__ import annotations

import gymnasium as gym
from torch import nn

from beast.config import ModelConfig
from beast.distributions import ActionDistribution, action_distribution, action_feature_size
from beast.envs.spaces import PackedBox, observation_space_error
from beast.memory.config import MemoryConfig
from beast.models.agent import AgentOutput, CoreInputs, PolicyValueNet, act_step
from beast.models.atari import NATURE_MIN_SIZE, ImpalaResNet, NatureCNN, input_scale_for
from beast.models.encoders import EntryTorso, FlatEncoder, has_image_entry
from beast.models.mlp import MLPTorso, PolicyValueMLP, mlp_layers

__all__ = ["AgentOutput", "CoreInputs", "PolicyValueMLP", "PolicyValueNet", "act_step",
           "build_model", "core_inputs"]

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


def core_inputs(config: ModelConfig, memory: MemoryConfig | None, dist: ActionDistribution,
                lstm_size: int) -> CoreInputs:
    """What the LSTM core reads beside the torso: --last-action-reward, and with
    --episodic-memory (which implies it) the memory's readout, whose width follows from the
    core's hidden size, the action features and --memory-value (beast.memory)."""
    if memory is None or not memory.episodic_memory:
        return CoreInputs(last_action_reward=config.last_action_reward)
    from beast.memory import readout_size, value_size

    values = value_size(lstm_size, action_feature_size(dist), memory.memory_value)
    return CoreInputs(last_action_reward=True, memory_readout=readout_size(values),
                      memory_key_size=memory.memory_key_size)


def build_model(observation_space: gym.Space, action_space: gym.Space,
                config: ModelConfig, memory: MemoryConfig | None = None) -> nn.Module:
    """The model for these spaces: every model has `forward(obs, core_state, done)`,
    `initial_state(batch)`, `core_state_shape` (None for feed-forward models), `dist` and
    `extra_outputs` (beast.models.agent). Observations arrive as the env adapters serve them
    (beast.envs.spaces: structured spaces packed into a PackedBox). `memory`: the episodic
    memory's group, which widens a recurrent core's input (`core_inputs`)."""
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
        size = IMAGE_LSTM_SIZE if lstm else 0
        return PolicyValueNet(torso, torso.feature_size, obs_shape, dist, size,
                              core_inputs(config, memory, dist, size))
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
        size = torso.feature_size
        return PolicyValueNet(torso, size, obs_shape, dist, size,
                              core_inputs(config, memory, dist, size))
    torso = _image_torso(kind, obs_shape, observation_space)
    size = IMAGE_LSTM_SIZE if lstm else 0
    return PolicyValueNet(torso, torso.feature_size, obs_shape, dist, size,
                          core_inputs(config, memory, dist, size))
