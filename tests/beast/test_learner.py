"""Learner.step on real unrolls: counters, metrics, masking of placeholder steps, optimisers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from beast.config import LossConfig, OptimConfig
from beast.envs import make_vector_env
from beast.learner import Learner, linear_decay
from beast.models import PolicyValueMLP
from beast.mono.actor import UnrollWorker
from beast.rollout import RolloutSpec

T, K = 9, 4


def counting_batch(version: int = 0) -> dict[str, torch.Tensor]:
    import tests.envs.counting_env  # noqa: F401

    envs = make_vector_env("Counting-v0", K)
    worker = UnrollWorker(envs, PolicyValueMLP((2,), 3, (8,)), T, seed=3)
    slot = RolloutSpec.from_spaces(envs.single_observation_space,
                                   envs.single_action_space).allocate((T + 1, K))
    worker.fill(slot, version)
    return {k: torch.from_numpy(v) for k, v in slot.items()}


def make_learner(optimizer: str = "adam", **optim) -> Learner:
    torch.manual_seed(0)
    return Learner(PolicyValueMLP((2,), 3, (8,)), LossConfig(),
                   OptimConfig(optimizer=optimizer, **optim), total_steps=10_000)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_step_updates_weights_counters_and_reports_metrics(optimizer: str) -> None:
    learner = make_learner(optimizer)
    before = copy.deepcopy(learner.model.state_dict())
    metrics = learner.step(counting_batch())
    assert learner.version == 1 and learner.env_steps == T * K
    changed = [not torch.equal(before[k], v) for k, v in learner.model.state_dict().items()]
    assert all(changed)
    for name in ("loss/total", "loss/pg", "loss/baseline", "loss/entropy", "grad_norm",
                 "learning_rate", "aps/kl_mean", "aps/kl_p95", "aps/lag_mean",
                 "aps/log_rho_abs_mean", "aps/rho_clip_frac"):
        assert np.isfinite(metrics[name]), name
    assert metrics["version"] == 1


def test_learning_rate_decays_linearly_to_zero() -> None:
    learner = make_learner(learning_rate=1e-3)
    assert learner.learning_rate() == pytest.approx(1e-3)
    learner.env_steps = 2_500
    assert learner.learning_rate() == pytest.approx(0.75e-3)
    learner.env_steps = 20_000
    assert learner.learning_rate() == 0.0
    assert linear_decay(2.0, 0.5) == 1.0
    constant = make_learner(learning_rate=1e-3, lr_decay="none")
    constant.env_steps = 9_999
    assert constant.learning_rate() == pytest.approx(1e-3)


def test_policy_lag_is_measured_from_policy_version() -> None:
    learner = make_learner()
    learner.version = 7
    batch = counting_batch(version=4)
    batch["policy_version"][0] = 2  # step 0 came from an older unroll
    metrics = learner.step(batch)
    valid = ~(batch["terminated"][:-1] | batch["truncated"][:-1])
    lags = (7 - batch["policy_version"][:-1])[valid].float()
    assert metrics["aps/lag_mean"] == pytest.approx(lags.mean().item())
    assert metrics["aps/lag_max"] == 5 and metrics["aps/lag_min"] == 3


def test_kl_is_zero_when_behaviour_is_the_learner() -> None:
    learner = make_learner()
    batch = counting_batch()
    with torch.no_grad():
        batch["policy_logits"] = learner.model(batch["obs"]).policy_logits
    metrics = learner.step(batch)
    assert metrics["aps/kl_mean"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["aps/rho_clip_frac"] == 0.0
    assert metrics["aps/log_rho_abs_mean"] == pytest.approx(0.0, abs=1e-6)
    assert learner.last_kl.shape == (T, K)
    assert float(learner.last_kl.abs().max()) < 1e-6


def gradients(batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    learner = make_learner(optimizer="rmsprop", max_grad_norm=0.0)
    learner.step(batch)
    return [p.grad.clone() for p in learner.model.parameters()]


def test_actions_taken_at_final_observations_do_not_affect_the_update() -> None:
    """With next-step autoreset the action at a terminal observation is ignored by the env;
    the learner must mask that placeholder transition (and the last step only bootstraps)."""
    batch = counting_batch()
    ended = batch["terminated"] | batch["truncated"]
    ended[-1] = True  # step T: its action is not part of this batch's transitions
    assert ended[:-1].any(), "the fixture should contain episode ends"
    perturbed = {k: v.clone() for k, v in batch.items()}
    perturbed["action"][ended] = (perturbed["action"][ended] + 1) % 3
    perturbed["policy_logits"][ended] += torch.randn_like(perturbed["policy_logits"][ended])
    perturbed["reward"][0] += 100.0  # step 0's reward belongs to the previous unroll
    for a, b in zip(gradients(batch), gradients(perturbed)):
        torch.testing.assert_close(a, b)
    # ...whereas the same perturbation at a real step does change the update.
    real = {k: v.clone() for k, v in batch.items()}
    real["action"][~ended] = (real["action"][~ended] + 1) % 3
    assert any(not torch.allclose(a, b) for a, b in zip(gradients(batch), gradients(real)))


def test_state_dict_round_trip_continues_identically() -> None:
    first = make_learner()
    first.step(counting_batch())
    second = make_learner(learning_rate=1.0)  # different config state is overwritten
    second.optim_config = first.optim_config
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    batch = counting_batch()
    first.step(batch)
    second.step(batch)
    assert second.version == first.version == 2
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        torch.testing.assert_close(a, b)
