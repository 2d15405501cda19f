"""Convolutional torsos for image observations `[C, H, W]` (Atari frame stacks, MinAtar grids).

* `NatureCNN` (Mnih et al. 2015): three convolutions and a 512-unit layer; the cheap choice
  for 84×84 Atari frames. It needs frames of at least 36×36.
* `ImpalaResNet` (Espeholt et al. 2018): three stages of conv, max-pool and two residual
  blocks, then a 256-unit layer; stronger, slower, and fine on small grids such as MinAtar's
  10×10.

Both cast observations to float and multiply them by `input_scale`: `input_scale_for(space)`
maps integer observations to [0, 1] by their upper bound (1/255 for Atari pixels, 1 for
MinAtar's 0/1 grids, which a fixed 1/255 would all but erase).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

NATURE_MIN_SIZE = 36  # the smallest frame the Nature convolutions reduce to at least 1×1


def input_scale_for(space: gym.spaces.Box) -> float:
    """1 / the space's upper bound for integer (or bool) observations; 1 for float ones."""
    if space.dtype == np.bool_ or np.issubdtype(space.dtype, np.integer):
        high = float(np.max(space.high))
        return 1.0 / high if high > 0 else 1.0
    return 1.0


def _flat_size(convs: nn.Module, obs_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(convs(torch.zeros(1, *obs_shape)).numel())


class NatureCNN(nn.Module):
    """[N, C, H, W] → [N, 512] features."""

    def __init__(self, obs_shape: tuple[int, int, int], input_scale: float = 1.0,
                 feature_size: int = 512) -> None:
        super().__init__()
        self.input_scale = input_scale
        channels = obs_shape[0]
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(_flat_size(self.convs, obs_shape), feature_size), nn.ReLU())
        self.feature_size = feature_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(obs.float() * self.input_scale))


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ImpalaResNet(nn.Module):
    """[N, C, H, W] → [N, 256] features; each stage halves the frame (rounding up)."""

    def __init__(self, obs_shape: tuple[int, int, int], input_scale: float = 1.0,
                 stage_channels: tuple[int, ...] = (16, 32, 32), feature_size: int = 256) -> None:
        super().__init__()
        self.input_scale = input_scale
        stages: list[nn.Module] = []
        in_channels = obs_shape[0]
        for out_channels in stage_channels:
            stages += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.MaxPool2d(3, stride=2, padding=1),
                _ResidualBlock(out_channels),
                _ResidualBlock(out_channels),
            ]
            in_channels = out_channels
        self.convs = nn.Sequential(*stages, nn.ReLU(), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(_flat_size(self.convs, obs_shape), feature_size), nn.ReLU())
        self.feature_size = feature_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(obs.float() * self.input_scale))
