"""Convolutional torsos for image observations `[C, H, W]` (Atari frame stacks, MinAtar grids).

* `NatureCNN` (Mnih et al. 2015): three convolutions and a 512-unit layer; the cheap choice
  for 84×84 Atari frames. It needs frames of at least 36×36.
* `ImpalaResNet` (Espeholt et al. 2018): three stages of conv, max-pool and two residual
  blocks, then a 256-unit layer; stronger, slower, and fine on small grids such as MinAtar's
  10×10.

Both take observations of any integer or bool dtype: uint8 pixels are scaled to [0, 1], bools
and other values are cast as they are.
"""

from __future__ import annotations

import torch
from torch import nn

NATURE_MIN_SIZE = 36  # the smallest frame the Nature convolutions reduce to at least 1×1


def as_float_image(obs: torch.Tensor) -> torch.Tensor:
    return obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()


def _flat_size(convs: nn.Module, obs_shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(convs(torch.zeros(1, *obs_shape)).numel())


class NatureCNN(nn.Module):
    """[N, C, H, W] → [N, 512] features."""

    def __init__(self, obs_shape: tuple[int, int, int], feature_size: int = 512) -> None:
        super().__init__()
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
        return self.fc(self.convs(as_float_image(obs)))


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

    def __init__(self, obs_shape: tuple[int, int, int], stage_channels: tuple[int, ...] = (16, 32, 32),
                 feature_size: int = 256) -> None:
        super().__init__()
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
        return self.fc(self.convs(as_float_image(obs)))
