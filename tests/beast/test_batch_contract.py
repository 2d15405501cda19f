"""Learner.step's batch contract (beast.batch_contract): NumPy batches take the tensor path, a
wrong batch fails with one line naming its field, and a step that raises changes nothing."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from beast.batch_contract import BatchError, as_tensors
from beast.config import ImpactConfig, LossConfig, OptimConfig, VmpoConfig
from beast.learner import Learner, NonFiniteError
from beast.models import AgentOutput, build_model
from beast.objectives import ObjectiveResult, build_objective
from beast.rollout import RolloutSpec
from tests.beast.test_learner import (ACTION_SPACE, MODEL, OBS_SPACE, K, T, counting_batch,
                                      make_learner)
from tests.beast.test_objectives import COUNTING, next_batch
from tests.beast.test_objectives import make_learner as make_recurrent_learner

# What Learner.step's docstring says it reads from a feed-forward model's batch.
READ = ("obs", "reward", "terminated", "truncated", "action", "policy_params", "policy_version")


def one_line_error(error: pytest.ExceptionInfo, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)


def test_the_checked_keys_are_the_documented_ones() -> None:
    assert set(make_learner().batch_fields) == set(READ)
    recurrent, _ = make_recurrent_learner(COUNTING, "impala", use_lstm=True)
    assert set(recurrent.batch_fields) == {*READ, "core_state"}


def test_a_numpy_batch_is_the_same_step_as_the_tensor_batch() -> None:
    batch = counting_batch()
    arrays = {k: v.numpy() for k, v in batch.items()}
    views = as_tensors(arrays)
    assert all(views[k].data_ptr() == arrays[k].ctypes.data for k in arrays)  # no copy
    with_tensors, with_arrays = make_learner(), make_learner()
    expected = with_tensors.step(batch, env_steps=100)
    result = with_arrays.step(arrays, env_steps=100)
    assert result.metrics == expected.metrics
    torch.testing.assert_close(result.drift, expected.drift, rtol=0, atol=0)
    for a, b in zip(with_tensors.model.parameters(), with_arrays.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("key", READ)
def test_a_missing_key_is_named(key: str) -> None:
    learner = make_learner()
    batch = counting_batch()
    del batch[key]
    with pytest.raises(ValueError) as error:
        learner.step(batch, env_steps=0)
    one_line_error(error, f"no {key!r}")
    assert learner.version == 0


def test_a_recurrent_model_needs_the_core_state() -> None:
    """Without it the replay would start every unroll from the zero state, silently."""
    learner, worker = make_recurrent_learner(COUNTING, "impala", use_lstm=True)
    batch = next_batch(learner, worker)
    del batch["core_state"]
    with pytest.raises(BatchError) as error:
        learner.step(batch, env_steps=0)
    one_line_error(error, "no 'core_state'")


def drop_last_step(batch: dict[str, torch.Tensor], key: str) -> None:
    batch[key] = batch[key][:-1]


def swap_time_and_envs(batch: dict[str, torch.Tensor], key: str) -> None:
    batch[key] = batch[key].transpose(0, 1)


def narrow_last_dim(batch: dict[str, torch.Tensor], key: str) -> None:
    batch[key] = batch[key][..., :1]


def add_a_dim(batch: dict[str, torch.Tensor], key: str) -> None:
    batch[key] = batch[key][..., None]


def as_int(batch: dict[str, torch.Tensor], key: str) -> None:
    batch[key] = batch[key].long()


def as_double(batch: dict[str, torch.Tensor], key: str) -> None:
    batch[key] = batch[key].double()


@pytest.mark.parametrize("key, change, words", [
    ("action", drop_last_step, "leading [T+1, B]"),
    ("obs", swap_time_and_envs, "leading [T+1, B]"),
    ("obs", narrow_last_dim, f"the model expects {(T + 1, K, 2)}"),
    ("policy_params", narrow_last_dim, f"the model expects {(T + 1, K, 3)}"),
    ("reward", add_a_dim, f"the model expects {(T + 1, K)}"),
    ("policy_version", add_a_dim, "the model expects"),
    ("terminated", as_int, "is int64"),
    ("action", as_double, "is float64"),
    ("reward", as_double, "is float64"),
])
def test_a_misshapen_field_is_named(key: str, change: Callable, words: str) -> None:
    learner = make_learner()
    batch = counting_batch()
    change(batch, key)
    with pytest.raises(BatchError) as error:
        learner.step(batch, env_steps=0)
    one_line_error(error, f"batch[{key!r}]", words)


def test_a_batch_needs_one_transition() -> None:
    learner = make_learner()
    batch = {k: v[:1] for k, v in counting_batch().items()}
    with pytest.raises(BatchError) as error:
        learner.step(batch, env_steps=0)
    one_line_error(error, "batch['reward']", "T >= 1")


def test_a_value_that_is_not_an_array_is_named() -> None:
    batch: dict[str, Any] = dict(counting_batch())
    batch["reward"] = batch["reward"].tolist()
    with pytest.raises(BatchError) as error:
        make_learner().step(batch, env_steps=0)
    one_line_error(error, "batch['reward'] is a list")


def poison_step(batch: dict[str, torch.Tensor], t: int, env: int) -> None:
    """Put step [t, env] back to what the rollout buffers hold before anyone writes it."""
    model = build_model(OBS_SPACE, ACTION_SPACE, MODEL)
    for key, field in RolloutSpec.build(OBS_SPACE, model).fields.items():
        batch[key][t, env] = torch.as_tensor(np.array(field.poison, field.dtype))


@pytest.mark.parametrize("t, env", [(T, 2), (0, 0), (4, K - 1)])
def test_an_unwritten_step_is_named_not_blamed_on_the_env(t: int, env: int) -> None:
    learner = make_learner()
    batch = counting_batch()
    poison_step(batch, t, env)
    assert torch.isnan(batch["reward"][t, env])  # would read as "the env returned NaN"
    with pytest.raises(BatchError) as error:
        learner.step(batch, env_steps=0)
    one_line_error(error, f"batch['policy_version'][{t}, {env}] is -1", "nobody wrote")
    assert learner.version == 0


def test_a_fresh_buffer_is_reported_unwritten() -> None:
    model = build_model(OBS_SPACE, ACTION_SPACE, MODEL)
    slot = RolloutSpec.build(OBS_SPACE, model).allocate((T + 1, K))
    with pytest.raises(BatchError) as error:
        make_learner().step(slot, env_steps=0)
    one_line_error(error, "batch['policy_version'][0, 0] is -1")


def learner_on(loss: str) -> Learner:
    """A learner whose objective moves state inside its call: targets copied every 2 steps,
    IMPACT's KL coefficient adapted; the LR decays with env steps."""
    torch.manual_seed(0)
    model = build_model(OBS_SPACE, ACTION_SPACE, MODEL)
    objective = build_objective(LossConfig(loss=loss), model,
                                impact=ImpactConfig(impact_target_period=2, impact_kl_coef=0.1),
                                vmpo=VmpoConfig(vmpo_target_period=2))
    return Learner(model, objective, OptimConfig(), total_steps=10_000)


def nan_reward(batch: dict[str, torch.Tensor]) -> None:
    batch["reward"][3, 1] = float("nan")  # NonFiniteError before the model runs


def huge_rewards(batch: dict[str, torch.Tensor]) -> None:
    batch["reward"][1:] = 3e38  # finite, but the returns overflow: the objective has run


def missing_action(batch: dict[str, torch.Tensor]) -> None:
    del batch["action"]


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Exact equality of nested state dicts (tensors, numbers, flags)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("loss", ["impala", "impact", "vmpo"])
@pytest.mark.parametrize("spoil, raised", [(nan_reward, NonFiniteError),
                                           (huge_rewards, NonFiniteError),
                                           (missing_action, BatchError)])
def test_a_failed_step_changes_nothing(loss: str, spoil: Callable, raised: type) -> None:
    good = counting_batch()  # each call acts with a fresh random policy: make one, reuse it
    bad = {k: v.clone() for k, v in good.items()}
    spoil(bad)
    failing, clean = learner_on(loss), learner_on(loss)
    for learner in (failing, clean):
        learner.step(good, env_steps=0)  # the optimiser has moments now
    before = copy.deepcopy(failing.state_dict())
    with pytest.raises(raised):
        failing.step(bad, env_steps=5_000)  # would halve the learning rate
    assert failing.version == 1
    assert_same(failing.state_dict(), before)  # weights, objective buffers, optimiser, lr
    # ...so the run goes on as if the failed step had never been tried.
    for learner in (failing, clean):
        learner.step(good, env_steps=T * K)
    assert_same(failing.state_dict(), clean.state_dict())


class NaNGradient(nn.Module):
    """An objective's loss plus sqrt(0 * sum(baseline)): a finite loss (0 added) whose gradient
    is NaN (inf * 0), so the step fails at the gradient-norm check, after backward."""

    def __init__(self, objective: nn.Module) -> None:
        super().__init__()
        self.inner = objective

    def forward(self, output: AgentOutput, batch: dict[str, torch.Tensor]) -> ObjectiveResult:
        result = self.inner(output, batch)
        return result._replace(loss=result.loss + (0 * output.baseline.sum()).sqrt())


@pytest.mark.parametrize("loss", ["impala", "impact", "vmpo"])
def test_a_non_finite_gradient_changes_nothing(loss: str) -> None:
    good = counting_batch()
    failing, clean = learner_on(loss), learner_on(loss)
    for learner in (failing, clean):
        learner.step(good, env_steps=0)
    before = copy.deepcopy(failing.state_dict())
    objective = failing.objective
    failing.objective = NaNGradient(objective)
    with pytest.raises(NonFiniteError, match="gradient norm"):
        failing.step(good, env_steps=5_000)
    failing.objective = objective
    assert failing.version == 1
    assert failing.optimizer.param_groups[0]["lr"] == clean.optimizer.param_groups[0]["lr"]
    assert_same(failing.state_dict(), before)
    for learner in (failing, clean):
        learner.step(good, env_steps=T * K)
    assert_same(failing.state_dict(), clean.state_dict())
