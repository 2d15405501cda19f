"""What the learner does for the episodic memory: build it for a model, and after each
optimiser step hand it a sample of the batch and let it refresh when due.

    trainer = build_memory(config.memory, model, discount, seed)   # None when off
    model.memory_reader = trainer.reader()      # actors' copies of the model read the banks
    each learner step (beast.learner.Learner):
        metrics.update(trainer.after_step(batch))   # feed S transitions, maybe refresh
    checkpoint: trainer.state_dict() / load_state_dict()
    --eval: model.memory_reader = frozen_reader(config.memory, model, checkpoint's memory)

A fed transition is (o_t, torso features of o_t, value, return target): the value is
[h, onehot(a_t), G_t] (or [h] alone, --memory-value h), with h the core's hidden state the actor
acted from at t (the rollout's core_state, so no extra forward pass) and G_t the discounted
return within the unroll, bootstrapped with the actor's baseline and cut at episode ends. Only
real transitions are sampled (not the placeholder out of an episode's final observation).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from beast.algo.timestep import align_rollout
from beast.algo.vmpo import n_step_returns
from beast.distributions import action_features
from beast.memory.banks import MemoryReader
from beast.memory.config import MemoryConfig
from beast.memory.episodic import EpisodicMemory
from beast.rollout import CORE_STATE


class MemoryTrainer:
    """The learner's side of the memory for one model (see the module docstring)."""

    def __init__(self, memory: EpisodicMemory, model: nn.Module, discount: float) -> None:
        self.memory = memory
        self.model = model
        self.discount = discount

    def reader(self) -> MemoryReader:
        cfg = self.memory.config
        return MemoryReader(self.memory.banks, cfg.memory_top_k, cfg.memory_readout_temperature)

    def _torso(self, obs: torch.Tensor) -> torch.Tensor:
        """Torso features of observations (the memory and its learner are on the CPU)."""
        with torch.no_grad():
            return self.model.torso(obs).float()

    def after_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Feed memory_samples_per_step transitions of this [T+1, B] batch, then step the
        memory (a refresh every memory_refresh_every steps, which trains the key encoder).
        Returns its metrics."""
        with torch.no_grad():
            self._feed(batch)
        return self.memory.step(self._torso)

    def _feed(self, batch: dict[str, torch.Tensor]) -> None:
        steps = align_rollout(batch, self.discount, values=batch["baseline"].float())
        returns = n_step_returns(steps.r_t.float(), steps.discount_t.float(), steps.v_tm1,
                                 steps.bootstrap_value, valid=steps.valid)
        real = steps.valid.nonzero()
        if len(real):
            count = min(self.memory.config.memory_samples_per_step, len(real))
            pick = real[torch.randperm(len(real), generator=self.memory.generator)[:count]]
            t, b = pick[:, 0], pick[:, 1]
            obs = batch["obs"][t, b].float()
            h = batch[CORE_STATE][t, b, 0, -1].float()
            actions = action_features(self.model.dist, batch["action"][t, b])
            target = returns[t, b]
            self.memory.observe(obs, self._torso(obs), self.memory.value_vector(h, actions, target),
                                target)

    def state_dict(self) -> dict[str, Any]:
        return self.memory.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state)


def build_memory(config: MemoryConfig, model: nn.Module, discount: float, seed: int
                 ) -> MemoryTrainer | None:
    """The memory for `model` (None with --episodic-memory off). The model must have been
    built with it (beast.models.core_inputs): its key encoder `memory_key`, its readout width
    and an LSTM core. Its banks are in shared memory, ready for actor processes."""
    if not config.episodic_memory:
        return None
    check_memory_model(config, model)
    values = model.core_inputs.memory_readout - 2
    memory = EpisodicMemory(config, tuple(model.obs_shape), model.feature_size, values,
                            model.memory_key, seed)
    memory.banks.share()
    return MemoryTrainer(memory, model, discount)


def check_memory_model(config: MemoryConfig, model: nn.Module) -> None:
    """With --episodic-memory on, `model` must read the memory: raises ValueError if not."""
    needs = ("memory_key", "core_inputs", "feature_size", "torso", "obs_shape")
    if config.episodic_memory and (any(getattr(model, name, None) is None for name in needs)
                                   or model.core_state_shape is None):
        raise ValueError("--episodic-memory needs a recurrent model built with the memory's "
                         "core inputs (Beast's --use-lstm models; a --model-factory model "
                         "builds them with beast.models.core_inputs)")


def frozen_reader(config: MemoryConfig, model: nn.Module, state: dict[str, Any]
                  ) -> MemoryReader:
    """`--eval`: a reader over the memory a checkpoint holds (`Learner.state_dict()["memory"]`),
    frozen: playing never changes it."""
    trainer = build_memory(config, model, discount=1.0, seed=0)
    assert trainer is not None
    trainer.load_state_dict(state)
    trainer.memory.freeze()
    return trainer.reader()
