"""Observation encoders: what turns the array a runtime carries into the model's input.

- A plain Box observation is flattened and cast to float (`FlatEncoder`).
- A packed Dict / Tuple / Discrete observation (beast.envs.spaces.PackedBox) is split back into
  its entries: a Discrete entry becomes a one-hot vector, a Box entry its flattened values
  (`FlatEncoder`), and `EntryTorso` gives every image entry (a 3-D Box) its own CNN, the flat
  entries one MLP, and concatenates the features.
"""

from __future__ import annotations

import math
from typing import Callable

import gymnasium as gym
import torch
from torch import nn

from beast.envs.spaces import Entry, PackedBox


def _entries(space: gym.spaces.Box) -> tuple[Entry, ...]:
    if isinstance(space, PackedBox):
        return space.entries
    return (Entry("obs", space, 0, math.prod(space.shape)),)


def is_image(entry: Entry) -> bool:
    return not entry.is_discrete and len(entry.space.shape) == 3


def channels_first_shape(shape: tuple[int, ...]) -> tuple[tuple[int, int, int], bool]:
    """[C, H, W] for an image entry, and whether it came channels-last (e.g. MiniGrid's
    [7, 7, 3]), which the image torso then transposes."""
    channels_last = shape[-1] <= 4 < shape[0]
    return ((shape[2], shape[0], shape[1]) if channels_last else tuple(shape)), channels_last


class FlatEncoder(nn.Module):
    """[N, *obs_shape] packed observations → [N, out_size] floats: Box entries flattened,
    Discrete entries one-hot (an index outside the space is an error, not a silent zero)."""

    def __init__(self, space: gym.spaces.Box, entries: tuple[Entry, ...] | None = None) -> None:
        super().__init__()
        self.obs_size = math.prod(space.shape)
        self.entries = _entries(space) if entries is None else entries
        self.plain = not isinstance(space, PackedBox)
        self.out_size = sum(int(e.space.n) if e.is_discrete else e.size for e in self.entries)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(obs.shape[0], self.obs_size)
        if self.plain:
            return flat.float()
        parts = []
        for e in self.entries:
            values = flat[:, e.offset:e.offset + e.size]
            if e.is_discrete:
                index = values[:, 0].long() - int(e.space.start)
                parts.append(nn.functional.one_hot(index, int(e.space.n)).float())
            else:
                parts.append(values.float())
        return torch.cat(parts, dim=-1)


class EntryTorso(nn.Module):
    """One torso per entry of a packed observation, features concatenated: each image entry
    through `make_image_torso(shape_chw, entry_space)`, the other entries through one MLP."""

    def __init__(self, space: PackedBox, make_image_torso: Callable[[tuple[int, int, int],
                                                                      gym.spaces.Box], nn.Module],
                 make_mlp: Callable[[int], nn.Module], mlp_feature_size: int) -> None:
        super().__init__()
        self.obs_size = math.prod(space.shape)
        images = [e for e in space.entries if is_image(e)]
        flat = tuple(e for e in space.entries if not is_image(e))
        self.images = nn.ModuleList()
        self.image_layout: list[tuple[int, int, tuple[int, ...], bool]] = []
        self.feature_size = 0
        for entry in images:
            shape, channels_last = channels_first_shape(tuple(entry.space.shape))
            torso = make_image_torso(shape, entry.space)
            self.images.append(torso)
            self.image_layout.append((entry.offset, entry.size, tuple(entry.space.shape),
                                      channels_last))
            self.feature_size += torso.feature_size
        self.flat = FlatEncoder(space, flat) if flat else None
        self.mlp = make_mlp(self.flat.out_size) if self.flat is not None else None
        if self.flat is not None:
            self.feature_size += mlp_feature_size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(obs.shape[0], self.obs_size)
        features = []
        for torso, (offset, size, shape, channels_last) in zip(self.images, self.image_layout):
            image = flat[:, offset:offset + size].reshape(-1, *shape)
            features.append(torso(image.permute(0, 3, 1, 2) if channels_last else image))
        if self.flat is not None:
            features.append(self.mlp(self.flat(flat)))
        return torch.cat(features, dim=-1)


def has_image_entry(space: gym.spaces.Box) -> bool:
    return isinstance(space, PackedBox) and any(is_image(e) for e in space.entries)

