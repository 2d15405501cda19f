"""The batch contract of `Learner.step`: the keys it reads, their shapes and dtypes, checked at
entry so that a wrong batch fails with one line naming the field, not with a broadcast error
deep inside a loss, or no error at all (integer end flags turn the masks into gathers).

    fields = learner_fields(model)                     # once, from what the model declares
    batch = check_learner_batch(as_tensors(batch), fields)    # every step: O(keys) metadata,
                                                              # plus one pass over policy_version

The agent half's shapes and dtypes come from the rollout schema (beast.rollout.agent_fields),
so a batch any runtime produces passes by construction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from beast.rollout import CORE_STATE, ENV_STEP_FIELDS, LAST_ACTION, MEM_READOUT, agent_fields

AGENT_KEYS_READ = ("action", "policy_params", "policy_version", CORE_STATE, LAST_ACTION,
                   MEM_READOUT)
"""The agent half the learner reads (each where the model has it); the baseline and other
model extras are carried, not read."""


class BatchError(ValueError):
    """A batch breaks Learner.step's contract; the one-line message names the field, what is
    wrong with it and what to do."""


class Expected(NamedTuple):
    """What one key must hold per step and env; None: not checked (the env chooses it)."""

    shape: tuple[int, ...] | None
    dtype: np.dtype | None


def learner_fields(model: nn.Module) -> dict[str, Expected]:
    """The keys Learner.step and the objectives read from a batch of `model`'s rollouts.
    `reward` comes first: its [T+1, B] is the leading shape every other key must have."""
    agent = agent_fields(model)
    fields = {key: Expected(ENV_STEP_FIELDS[key].shape, ENV_STEP_FIELDS[key].dtype)
              for key in ("reward", "terminated", "truncated")}
    fields["obs"] = Expected(getattr(model, "obs_shape", None), None)
    fields.update({key: Expected(agent[key].shape, agent[key].dtype)
                   for key in AGENT_KEYS_READ if key in agent})
    return fields


def as_tensors(batch: Mapping[str, torch.Tensor | np.ndarray]) -> dict[str, torch.Tensor]:
    """The batch as tensors; a NumPy array becomes a tensor over the same memory (no copy)."""
    return {key: _as_tensor(key, value) for key, value in batch.items()}


def _as_tensor(key: str, value: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray):
        raise BatchError(f"batch[{key!r}] is a {type(value).__name__}; pass a torch.Tensor or "
                         "a numpy.ndarray")
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError):  # negative strides, or a dtype torch has not
        raise BatchError(f"batch[{key!r}] (a {value.dtype} array, strides {value.strides}) has "
                         "no tensor view; pass a numeric array with non-negative strides "
                         "(np.ascontiguousarray)") from None


def check_learner_batch(batch: dict[str, torch.Tensor], fields: dict[str, Expected]
                        ) -> dict[str, torch.Tensor]:
    """`batch`, after checking it against `fields` (learner_fields): every key present, the
    same [T+1, B] leading dims (T >= 1), the declared trailing dims and dtypes, and no step
    still poisoned. Raises BatchError for the first key that fails."""
    for key in fields:
        if key not in batch:
            raise BatchError(f"the batch has no {key!r}; Learner.step reads "
                             f"{', '.join(fields)} (see its docstring)")
    lead = tuple(batch["reward"].shape[:2])
    if batch["reward"].dim() < 2 or lead[0] < 2:
        raise BatchError(f"batch['reward'] has shape {tuple(batch['reward'].shape)}; the "
                         "learner needs [T+1, B] with T >= 1 (time-major, beast.rollout)")
    for key, expected in fields.items():
        _check_field(key, batch[key], lead, expected)
    _check_written(batch["policy_version"])
    return batch


def _check_field(key: str, value: torch.Tensor, lead: tuple[int, ...],
                 expected: Expected) -> None:
    shape = tuple(value.shape)
    if shape[:2] != lead:
        raise BatchError(f"batch[{key!r}] has shape {shape}, whose leading [T+1, B] is not "
                         f"{lead} as reward's; every key must be time-major [T+1, B, ...]")
    if expected.shape is not None and shape[2:] != expected.shape:
        raise BatchError(f"batch[{key!r}] has shape {shape}; the model expects "
                         f"{lead + expected.shape} ([T+1, B] + {expected.shape} per step)")
    dtype = str(value.dtype).removeprefix("torch.")
    if expected.dtype is not None and dtype != expected.dtype.name:
        raise BatchError(f"batch[{key!r}] is {dtype}; the rollout schema has "
                         f"{expected.dtype.name} (beast.rollout.RolloutSpec): cast it")


def _check_written(policy_version: torch.Tensor) -> None:
    """Unwritten steps still hold the buffers' poison (beast.rollout.FieldSpec.poison): -1 in
    policy_version, which no real step has (versions count from 0) and which every writer sets
    together with the rest of a step. One pass over [T+1, B] ints stands for the whole step."""
    unwritten = policy_version < 0
    if bool(unwritten.any()):
        t, env = torch.nonzero(unwritten)[0].tolist()
        raise BatchError(f"batch['policy_version'][{t}, {env}] is "
                         f"{int(policy_version[t, env])}, the poison of a step nobody wrote; "
                         "hand the learner only fully written unrolls")
