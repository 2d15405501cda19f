"""Why the policy-gradient ratio is not truncated at 1 by default: the exact expected gradient
of a value error, enumerated over actions (no sampling), against the V-trace loss."""

from __future__ import annotations

import torch

from beast.algo.losses import impala_loss
from beast.config import LossConfig
from beast.distributions import Categorical


def expected_pg_gradient(clip_pg_rho: float, value_error: float) -> tuple[torch.Tensor, torch.Tensor]:
    """d E_{a~mu}[loss] / d logits for one state with a learner policy pi ahead of mu, where
    every action's true advantage is 0 and the value is off by `value_error`."""
    logits = torch.tensor([0.4, -0.4], requires_grad=True)  # pi(0) ~ 0.69
    behaviour = torch.zeros(2)  # mu = [0.5, 0.5]
    mu = torch.softmax(behaviour, 0)
    dist = Categorical(2)
    total = torch.zeros(())
    for action in (0, 1):  # the expectation over a ~ mu, enumerated
        a = torch.tensor([[action]])
        one_step = impala_loss(
            target_log_probs=dist.log_prob(logits.view(1, 1, 2), a),
            behaviour_log_probs=dist.log_prob(behaviour.view(1, 1, 2), a),
            entropy=torch.zeros(1, 1), v_tm1=torch.full((1, 1), value_error),
            bootstrap_value=torch.zeros(1), r_t=torch.zeros(1, 1),
            discount_t=torch.zeros(1, 1), entropy_cost=0.0, baseline_cost=0.0,
            clip_rho_threshold=clip_pg_rho, clip_pg_rho_threshold=clip_pg_rho)
        total = total + mu[action] * one_step.total
    total.backward()
    return logits.grad, torch.softmax(logits.detach(), 0)


def test_truncating_at_one_turns_a_value_error_into_a_push_away_from_mu() -> None:
    grad, pi = expected_pg_gradient(clip_pg_rho=1.0, value_error=10.0)  # V overestimates
    assert pi[0] > 0.5
    # descending the gradient raises the logit pi already prefers: further from mu
    assert grad[0] < -0.1 and grad[1] > 0.1
    grad_under, _ = expected_pg_gradient(clip_pg_rho=1.0, value_error=-10.0)
    assert grad_under[0] > 0.1  # an underestimate pulls back towards mu instead


def test_the_default_truncation_leaves_a_value_error_without_effect_near_mu() -> None:
    default = LossConfig().clip_pg_rho
    assert default > 1.0
    grad, _ = expected_pg_gradient(clip_pg_rho=default, value_error=10.0)
    torch.testing.assert_close(grad, torch.zeros(2), atol=1e-5, rtol=0)
