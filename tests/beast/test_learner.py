"""Learner.step on real unrolls: counters, metrics, masking of placeholder steps, optimisers."""

from __future__ import annotations

import copy
import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from beast.acting import UnrollWorker
from beast.config import LossConfig, ModelConfig, OptimConfig
from beast.envs import make_vector_env
from beast.learner import Learner, build_optimizer, linear_decay
from beast.models import build_model
from beast.objectives import build_objective
from beast.rollout import EpisodeCounter, RolloutSpec

T, K = 9, 4
# Counting-v0's spaces (tests/envs/counting_env.py).
OBS_SPACE = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
ACTION_SPACE = gym.spaces.Discrete(3)
MODEL = ModelConfig(hidden_sizes=(8,))


def counting_batch(version: int = 0) -> dict[str, torch.Tensor]:
    import tests.envs.counting_env  # noqa: F401

    envs = make_vector_env("Counting-v0", K)
    model = build_model(envs.single_observation_space, envs.single_action_space, MODEL)
    worker = UnrollWorker(envs, model, T, seed=3)
    slot = RolloutSpec.build(envs.single_observation_space, model).allocate((T + 1, K))
    worker.fill(slot, version)
    return {k: torch.from_numpy(v) for k, v in slot.items()}


def make_learner(optimizer: str = "adam", **optim) -> Learner:
    torch.manual_seed(0)
    model = build_model(OBS_SPACE, ACTION_SPACE, MODEL)
    return Learner(model, build_objective(LossConfig(), model),
                   OptimConfig(optimizer=optimizer, **optim), total_steps=10_000)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_step_updates_weights_counters_and_reports_metrics(optimizer: str) -> None:
    learner = make_learner(optimizer)
    before = copy.deepcopy(learner.model.state_dict())
    batch = counting_batch()
    result = learner.step(batch, env_steps=0)
    metrics = result.metrics
    assert learner.version == 1
    # Env steps are counted where the unrolls are produced (the source's EpisodeCounter),
    # once per unroll, not by the learner.
    counter = EpisodeCounter()
    counter.add({k: v.numpy() for k, v in batch.items()})
    assert counter.env_steps == T * K
    assert "env_steps" not in metrics
    changed = [not torch.equal(before[k], v) for k, v in learner.model.state_dict().items()]
    assert all(changed)
    for name in ("loss/total", "loss/pg", "loss/baseline", "loss/entropy", "grad_norm",
                 "learning_rate", "learner/kl_mean", "learner/kl_p95", "learner/lag_mean",
                 "learner/log_rho_abs_mean", "learner/entropy", "impala/rho_clip_frac"):
        assert np.isfinite(metrics[name]), name
    assert metrics["version"] == 1
    assert result.drift.shape == result.valid.shape == (T, K)


def test_learning_rate_decays_linearly_to_zero() -> None:
    learner = make_learner(learning_rate=1e-3)
    assert learner.learning_rate(0) == pytest.approx(1e-3)
    assert learner.learning_rate(2_500) == pytest.approx(0.75e-3)
    assert learner.learning_rate(20_000) == 0.0
    assert linear_decay(2.0, 0.5) == 1.0
    constant = make_learner(learning_rate=1e-3, lr_decay="none")
    assert constant.learning_rate(9_999) == pytest.approx(1e-3)
    # The step applies the rate for the env steps it is given.
    result = learner.step(counting_batch(), env_steps=2_500)
    assert result.metrics["learning_rate"] == pytest.approx(0.75e-3)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(0.75e-3)


def test_policy_lag_is_measured_from_policy_version() -> None:
    learner = make_learner()
    learner.version = 7
    batch = counting_batch(version=4)
    batch["policy_version"][0] = 2  # step 0 came from an older unroll
    metrics = learner.step(batch, env_steps=0).metrics
    valid = ~(batch["terminated"][:-1] | batch["truncated"][:-1])
    lags = (7 - batch["policy_version"][:-1])[valid].float()
    assert metrics["learner/lag_mean"] == pytest.approx(lags.mean().item())
    assert metrics["learner/lag_max"] == 5 and metrics["learner/lag_min"] == 3


def test_kl_is_zero_when_behaviour_is_the_learner() -> None:
    learner = make_learner()
    batch = counting_batch()
    with torch.no_grad():
        batch["policy_params"] = learner.model(batch["obs"]).policy_params
    result = learner.step(batch, env_steps=0)
    metrics = result.metrics
    assert metrics["learner/kl_mean"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["impala/rho_clip_frac"] == 0.0
    assert metrics["learner/log_rho_abs_mean"] == pytest.approx(0.0, abs=1e-6)
    assert result.drift.shape == (T, K)
    assert float(result.drift.abs().max()) < 1e-6


def gradients(batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    learner = make_learner(optimizer="rmsprop", max_grad_norm=0.0)
    learner.step(batch, env_steps=0)
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
    perturbed["policy_params"][ended] += torch.randn_like(perturbed["policy_params"][ended])
    perturbed["reward"][0] += 100.0  # step 0's reward belongs to the previous unroll
    for a, b in zip(gradients(batch), gradients(perturbed)):
        torch.testing.assert_close(a, b)
    # ...whereas the same perturbation at a real step does change the update.
    real = {k: v.clone() for k, v in batch.items()}
    real["action"][~ended] = (real["action"][~ended] + 1) % 3
    assert any(not torch.allclose(a, b) for a, b in zip(gradients(batch), gradients(real)))


def test_state_dict_round_trip_continues_identically() -> None:
    first = make_learner()
    first.step(counting_batch(), env_steps=0)
    second = make_learner(learning_rate=1.0)  # different config state is overwritten
    second.optim_config = first.optim_config
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    batch = counting_batch()
    first.step(batch, env_steps=T * K)
    second.step(batch, env_steps=T * K)
    assert second.version == first.version == 2
    for a, b in zip(first.model.parameters(), second.model.parameters()):
        torch.testing.assert_close(a, b)


def adam_steps(epsilon: float, gradient_rms: float, steps: int = 20) -> float:
    """Distance a weight moves after `steps` updates with a constant gradient of that size,
    under the default optimiser with the given epsilon."""
    weight = nn.Parameter(torch.zeros(1000))
    optimizer = build_optimizer([weight], dataclasses.replace(OptimConfig(), epsilon=epsilon))
    for _ in range(steps):
        optimizer.zero_grad()
        weight.grad = torch.full_like(weight, gradient_rms)
        optimizer.step()
    return weight.detach().abs().mean().item()


def test_the_default_optimiser_steps_shrink_with_a_weak_gradient() -> None:
    """The long-run CartPole collapse (bench/long_cartpole.py): once a task is solved the
    advantages are noise and the weights' gradient RMS falls to ~1e-3. With eps 1e-5, Adam
    moves a weight as far on a gradient 100 times weaker, so a solved policy keeps taking
    full-size steps; the default eps makes the step follow the signal."""
    default = OptimConfig().epsilon
    strong, weak = adam_steps(default, 1e-3), adam_steps(default, 1e-5)
    assert weak < strong / 50
    usual_strong, usual_weak = adam_steps(1e-5, 1e-3), adam_steps(1e-5, 1e-5)
    assert usual_weak > usual_strong / 3  # what went wrong: Adam's scale invariance
