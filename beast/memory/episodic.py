"""EpisodicMemory: the learner side of the episodic memory, tying the familiarity buffer,
the contrastive key encoder, the store and the actors' banks together.

    g = make_key_encoder(feature_size, key_size)           # model.memory_key, owned by the model
    memory = EpisodicMemory(config, obs_shape, feature_size,
                            value_size(hidden, action_size, config.memory_value), g, seed)
    memory.banks.share()                                    # the runtime hands these to actors
    each learner step:
        memory.observe(obs, features, memory.value_vector(h, onehot_actions, returns), returns)
        metrics.update(memory.step(model.torso))            # every R steps: refresh
    actors: memory.banks.read(encode_keys(g, features), k, tau_r)   (beast.memory.banks)
    evaluation: memory.freeze()                             # step() then changes nothing
    checkpoint: memory.state_dict() / memory.load_state_dict(state)

A refresh: T contrastive epochs over the buffer (the torso frozen, only g trained), priorities
from the momentum losses, then store.decay (before the insert, so new rarities compete with
decayed old ones), store.reencode (so stored and new keys come from the same g and dedup
compares like with like), store.insert of the top fraction q of the rows not yet stored, and
banks.publish. It is not a submodule of the model (g is): it has its own checkpoint entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from beast.memory.banks import MemoryBanks
from beast.memory.config import MemoryConfig
from beast.memory.contrastive import augment, duplicate_mask, momentum_update, nt_xent, priorities
from beast.memory.familiarity import FamiliarityBuffer
from beast.memory.store import EpisodicStore


def make_key_encoder(feature_size: int, key_size: int) -> nn.Module:
    """g: features P -> 128 -> d (callers normalise its output with `encode_keys`)."""
    return nn.Sequential(nn.Linear(feature_size, 128), nn.ReLU(), nn.Linear(128, key_size))


def encode_keys(encoder: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Unit-norm keys [N, d] of features [N, P]."""
    return F.normalize(encoder(features), dim=-1)


def value_size(hidden: int, action_size: int, memory_value: str) -> int:
    """Width of a stored value: [h, onehot(action), return] (full) or [h] (h)."""
    return hidden + action_size + 1 if memory_value == "full" else hidden


class EpisodicMemory(nn.Module):
    """The learner's memory: holds no model weights (g belongs to the model) but trains g with
    its own Adam optimiser. Call from the learner thread only."""

    key_encoder: nn.Module

    def __init__(self, config: MemoryConfig, obs_shape: tuple[int, ...], feature_size: int,
                 value_size: int, key_encoder: nn.Module, seed: int) -> None:
        super().__init__()
        with torch.no_grad():
            key_shape = tuple(key_encoder(torch.zeros(1, feature_size)).shape)
        if key_shape != (1, config.memory_key_size):
            raise ValueError(f"key_encoder maps [1, {feature_size}] to {key_shape}, expected "
                             f"(1, {config.memory_key_size}) (--memory-key-size)")
        self.config = config
        self.value_width = value_size
        # Kept out of nn.Module's registry: g's weights are the model's, not the memory's.
        self.__dict__["key_encoder"] = key_encoder
        self.optimizer = torch.optim.Adam(key_encoder.parameters(), lr=config.memory_learning_rate)
        self.buffer = FamiliarityBuffer(config.memory_buffer_size, tuple(obs_shape), feature_size,
                                        value_size)
        self.store = EpisodicStore(config.memory_capacity, config.memory_key_size, value_size,
                                   feature_size)
        self.banks = MemoryBanks(config.memory_capacity, config.memory_key_size, value_size)
        self.generator = torch.Generator().manual_seed(seed)
        self.steps = 0
        self.refreshes = 0
        self.frozen = False

    def freeze(self) -> None:
        """Evaluation: from now on step() trains, inserts and publishes nothing."""
        self.frozen = True

    def value_vector(self, h: torch.Tensor, action_features: torch.Tensor,
                     returns: torch.Tensor) -> torch.Tensor:
        """The value rows [N, v] to store: [h, onehot(action), return] or [h] (memory_value).
        h [N, H] (detached here), action_features [N, A] (the one-hot actions), returns [N]."""
        if self.config.memory_value == "h":
            out = h.detach().float()
        else:
            out = torch.cat([h.detach().float(), action_features.float(),
                             returns.float()[:, None]], dim=1)
        if out.shape[1] != self.value_width:
            raise ValueError(f"the value rows have width {out.shape[1]}, the memory was built "
                             f"for {self.value_width} (see value_size)")
        return out

    def observe(self, obs: torch.Tensor, features: torch.Tensor, values: torch.Tensor,
                returns: torch.Tensor) -> None:
        """Push N transitions (the caller samples memory_samples_per_step of its batch)."""
        if not self.frozen:
            self.buffer.push(obs, features, values, returns)

    def step(self, torso: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """Once per learner step: every memory_refresh_every steps (with >= 2 buffered rows)
        refresh. Returns "memory/fill" always, and the refresh's metrics when one ran."""
        if self.frozen:
            return {"memory/fill": self.store.fill_ratio}
        self.steps += 1
        metrics: dict[str, float] = {}
        if self.steps % self.config.memory_refresh_every == 0 and self.buffer.size >= 2:
            metrics = self.refresh(torso)
        return {**metrics, "memory/fill": self.store.fill_ratio}

    def refresh(self, torso: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
        """Contrastive epochs, priorities, decay, re-encode, insert, publish (module doc)."""
        loss = self._train_epochs(torso)
        cfg, buffer, n = self.config, self.buffer, self.buffer.size
        weight = priorities(buffer.momentum[:n])
        candidates = (~buffer.inserted[:n]).nonzero().squeeze(1)
        count = max(1, int(cfg.memory_insert_fraction * candidates.numel()))
        chosen = candidates[torch.sort(weight[candidates], descending=True,
                                       stable=True).indices[:count]]
        encoder = self.key_encoder
        self.store.decay(cfg.memory_decay)
        with torch.no_grad():
            self.store.reencode(lambda p: encode_keys(encoder, p))
            counts = self.store.insert(
                encode_keys(encoder, buffer.features[chosen]), buffer.value[chosen],
                buffer.features[chosen], buffer.return_target[chosen], weight[chosen],
                self.steps, cfg.memory_duplicate_cosine)
        buffer.inserted[chosen] = True
        self.banks.publish(self.store)
        self.refreshes += 1
        return {"memory/contrastive_loss": loss, "memory/inserted": float(chosen.numel()),
                "memory/added": float(counts.added), "memory/rejected": float(counts.rejected),
                "memory/refreshes": float(self.refreshes)}

    def _train_epochs(self, torso: Callable[[torch.Tensor], torch.Tensor]) -> float:
        """memory_epochs passes over the buffer; updates momentum and epochs_seen. Returns the
        mean per-sample loss of the last epoch. A trailing minibatch of one row (no negative)
        joins the one before it."""
        cfg, buffer, encoder = self.config, self.buffer, self.key_encoder
        losses: list[torch.Tensor] = []
        for _ in range(cfg.memory_epochs):
            chunks = list(torch.randperm(buffer.size, generator=self.generator)
                          .split(cfg.memory_batch_size))
            if len(chunks) > 1 and chunks[-1].numel() == 1:
                chunks[-2:] = [torch.cat(chunks[-2:])]
            losses = []
            for index in chunks:
                obs = buffer.obs[index]
                with torch.no_grad():
                    p1 = torso(augment(obs, cfg.memory_noise_std, cfg.memory_cutout,
                                       self.generator))
                    p2 = torso(augment(obs, cfg.memory_noise_std, cfg.memory_cutout,
                                       self.generator))
                    mask = (duplicate_mask(encode_keys(encoder, buffer.features[index]),
                                           cfg.memory_duplicate_cosine)
                            if cfg.memory_mask_duplicates else None)
                loss = nt_xent(encoder(p1), encoder(p2), cfg.memory_temperature, mask)
                self.optimizer.zero_grad(set_to_none=True)
                loss.mean().backward()
                self.optimizer.step()
                loss = loss.detach()
                buffer.momentum[index] = momentum_update(
                    buffer.momentum[index], loss, buffer.epochs_seen[index], cfg.memory_momentum)
                buffer.epochs_seen[index] += 1
                losses.append(loss)
        return float(torch.cat(losses).mean())

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Buffer, store, optimiser, counters and generator as tensors and plain Python values
        (torch.load(..., weights_only=True) reads it back). g's weights are the model's."""
        return {"buffer": self.buffer.state_dict(), "store": self.store.state_dict(),
                "optimizer": self.optimizer.state_dict(), "steps": self.steps,
                "refreshes": self.refreshes, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore `state_dict()`'s output and publish the store to the banks."""
        self.buffer.load_state_dict(state["buffer"])
        self.store.load_state_dict(state["store"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps, self.refreshes = int(state["steps"]), int(state["refreshes"])
        self.generator.set_state(state["generator"])
        self.banks.publish(self.store)
