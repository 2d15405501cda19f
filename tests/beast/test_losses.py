"""IMPALA loss terms against per-position loop references, and the gradient contract.

The references loop over (t, b) with explicit softmax arithmetic so that masking, reduction
and sign conventions are checked independently of the vectorised code.
"""

from __future__ import annotations

import math

import pytest
import torch

from beast.algo import (
    baseline_loss,
    entropy_loss,
    impala_loss,
    policy_gradient_loss,
    vtrace_from_logits,
)
from beast.distributions import Categorical, categorical_entropy, categorical_kl

T, B, A = 4, 3, 5
DIST = Categorical(A)


def log_pi_a(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log pi(a_t|x_t) of the taken actions, as the losses take them."""
    return DIST.log_prob(logits, actions)


def make_batch(seed: int = 0, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(T, B, generator=g) > 0.3
    mask[0, 0], mask[1, 0] = True, False  # at least one of each
    return {
        "logits": torch.randn(T, B, A, generator=g, dtype=dtype),
        "behaviour_logits": torch.randn(T, B, A, generator=g, dtype=dtype),
        "actions": torch.randint(A, (T, B), generator=g),
        "advantages": torch.randn(T, B, generator=g, dtype=dtype),
        "v_tm1": torch.randn(T, B, generator=g, dtype=dtype),
        "targets": torch.randn(T, B, generator=g, dtype=dtype),
        "r_t": torch.randn(T, B, generator=g, dtype=dtype),
        "discount_t": torch.full((T, B), 0.9, dtype=dtype),
        "bootstrap_value": torch.randn(B, generator=g, dtype=dtype),
        "mask": mask,
    }


def softmax_row(row: torch.Tensor) -> list[float]:
    exps = [math.exp(float(x)) for x in row]
    return [e / sum(exps) for e in exps]


def loop_reduce(per_position, mask, reduction: str) -> float:
    """Sum (or mean) over (t, b) of per_position(t, b), skipping masked entries."""
    total, count = 0.0, 0
    for t in range(T):
        for b in range(B):
            if mask is None or bool(mask[t, b]):
                total += per_position(t, b)
                count += 1
    return total if reduction == "sum" else total / max(count, 1)


CASES = [(None, "sum"), (None, "mean"), ("mask", "sum"), ("mask", "mean")]


@pytest.mark.parametrize("use_mask,reduction", CASES)
def test_policy_gradient_loss_matches_loop(use_mask, reduction: str) -> None:
    d = make_batch()
    mask = d["mask"] if use_mask else None

    def term(t: int, b: int) -> float:
        p = softmax_row(d["logits"][t, b])
        return -math.log(p[int(d["actions"][t, b])]) * float(d["advantages"][t, b])

    got = policy_gradient_loss(log_pi_a(d["logits"], d["actions"]), d["advantages"], mask=mask,
                               reduction=reduction)
    assert got.shape == ()
    assert float(got) == pytest.approx(loop_reduce(term, mask, reduction), rel=1e-10)


@pytest.mark.parametrize("use_mask,reduction", CASES)
def test_baseline_loss_matches_loop(use_mask, reduction: str) -> None:
    d = make_batch(1)
    mask = d["mask"] if use_mask else None

    def term(t: int, b: int) -> float:
        return 0.5 * (float(d["targets"][t, b]) - float(d["v_tm1"][t, b])) ** 2

    got = baseline_loss(d["v_tm1"], d["targets"], mask=mask, reduction=reduction)
    assert float(got) == pytest.approx(loop_reduce(term, mask, reduction), rel=1e-10)


@pytest.mark.parametrize("use_mask,reduction", CASES)
def test_entropy_loss_is_negative_entropy(use_mask, reduction: str) -> None:
    d = make_batch(2)
    mask = d["mask"] if use_mask else None

    def term(t: int, b: int) -> float:
        return sum(p * math.log(p) for p in softmax_row(d["logits"][t, b]))

    got = entropy_loss(categorical_entropy(d["logits"]), mask=mask, reduction=reduction)
    assert float(got) == pytest.approx(loop_reduce(term, mask, reduction), rel=1e-10)
    assert float(got) < 0  # the entropy of a non-degenerate policy is positive


def test_masked_entries_contribute_nothing_even_if_not_finite() -> None:
    d = make_batch(3)
    clean = baseline_loss(d["v_tm1"], d["targets"], mask=d["mask"], reduction="sum")
    poisoned = d["v_tm1"].clone()
    poisoned[~d["mask"]] = float("nan")
    masked = baseline_loss(poisoned, d["targets"], mask=d["mask"], reduction="sum")
    assert float(masked) == float(clean)
    all_masked = torch.zeros(T, B, dtype=torch.bool)
    zero = entropy_loss(categorical_entropy(d["logits"]), mask=all_masked, reduction="mean")
    assert float(zero) == 0.0  # no division by zero


def test_reduction_and_mask_are_validated() -> None:
    d = make_batch()
    entropy = categorical_entropy(d["logits"])
    with pytest.raises(ValueError, match="reduction"):
        entropy_loss(entropy, reduction="max")
    with pytest.raises(ValueError, match="mask"):
        entropy_loss(entropy, mask=d["mask"][:, :2])
    with pytest.raises(ValueError, match="mask must be a bool"):
        entropy_loss(entropy, mask=d["mask"].float())
    with pytest.raises(ValueError, match="advantages"):
        policy_gradient_loss(log_pi_a(d["logits"], d["actions"]), d["advantages"][:, :2])
    with pytest.raises(ValueError, match="targets"):
        baseline_loss(d["v_tm1"], d["targets"][1:])


def test_categorical_kl_matches_loop_and_is_a_divergence() -> None:
    d = make_batch(4)
    kl = categorical_kl(d["logits"], d["behaviour_logits"])
    assert kl.shape == (T, B)
    for t in range(T):
        for b in range(B):
            p, q = softmax_row(d["logits"][t, b]), softmax_row(d["behaviour_logits"][t, b])
            expected = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
            assert float(kl[t, b]) == pytest.approx(expected, rel=1e-10)
    assert (kl > 0).all()
    zeros = torch.zeros(T, B, dtype=torch.float64)
    assert torch.equal(categorical_kl(d["logits"], d["logits"]), zeros)
    shifted = d["logits"] + 3.0  # the same distribution: softmax is shift-invariant
    torch.testing.assert_close(categorical_kl(d["logits"], shifted), zeros)


def test_categorical_kl_upcasts_half_precision() -> None:
    d = make_batch(5)
    kl = categorical_kl(d["logits"].bfloat16(), d["behaviour_logits"].bfloat16())
    assert kl.dtype == torch.float32
    reference = categorical_kl(d["logits"].bfloat16().double(),
                               d["behaviour_logits"].bfloat16().double())
    torch.testing.assert_close(kl.double(), reference, rtol=1e-5, atol=1e-6)


def impala_inputs(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """impala_loss's tensors for a categorical policy with these logits."""
    return dict(
        target_log_probs=log_pi_a(d["logits"], d["actions"]),
        behaviour_log_probs=log_pi_a(d["behaviour_logits"], d["actions"]),
        entropy=categorical_entropy(d["logits"]), v_tm1=d["v_tm1"],
        bootstrap_value=d["bootstrap_value"], r_t=d["r_t"], discount_t=d["discount_t"])


def impala(d: dict[str, torch.Tensor], **options):
    return impala_loss(**impala_inputs(d), **options)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_impala_total_is_the_weighted_sum_of_its_terms(reduction: str) -> None:
    d = make_batch(6)
    out = impala(d, valid=d["mask"], baseline_cost=0.7, entropy_cost=0.03, reduction=reduction)
    weighted = out.pg_loss + 0.7 * out.baseline_loss + 0.03 * out.entropy_loss
    torch.testing.assert_close(out.total, weighted)
    vt = vtrace_from_logits(d["behaviour_logits"], d["logits"], d["actions"], d["discount_t"],
                            d["r_t"], d["v_tm1"], d["bootstrap_value"], valid=d["mask"])
    torch.testing.assert_close(out.vs, vt.vs)
    torch.testing.assert_close(out.log_rhos, vt.log_rhos)
    options = dict(mask=d["mask"], reduction=reduction)
    torch.testing.assert_close(out.pg_loss, policy_gradient_loss(
        log_pi_a(d["logits"], d["actions"]), vt.pg_advantages, **options))
    torch.testing.assert_close(out.baseline_loss, baseline_loss(d["v_tm1"], vt.vs, **options))
    torch.testing.assert_close(out.entropy_loss,
                               entropy_loss(categorical_entropy(d["logits"]), **options))
    ratio = float(impala(d, valid=d["mask"], reduction="sum").pg_loss) / float(
        impala(d, valid=d["mask"], reduction="mean").pg_loss)
    assert ratio == pytest.approx(int(d["mask"].sum()))  # mean divides by the valid count


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradients_reach_logits_and_values_but_not_targets(reduction: str) -> None:
    d = make_batch(7)
    logits = d["logits"].clone().requires_grad_()
    values = d["v_tm1"].clone().requires_grad_()
    behaviour = d["behaviour_logits"].clone().requires_grad_()
    bootstrap = d["bootstrap_value"].clone().requires_grad_()
    mask = d["mask"]
    out = impala(d | {"logits": logits, "v_tm1": values, "behaviour_logits": behaviour,
                      "bootstrap_value": bootstrap}, valid=mask, reduction=reduction)
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad
    assert not out.log_rhos.requires_grad
    count = float(mask.sum()) if reduction == "mean" else 1.0

    # pg term: d/dlogits [-log pi(a) A] = -A (onehot(a) - softmax), zero where masked.
    (grad_pg,) = torch.autograd.grad(out.pg_loss, logits, retain_graph=True)
    onehot = torch.nn.functional.one_hot(d["actions"], A).double()
    expected = -out.pg_advantages[..., None] * (onehot - torch.softmax(d["logits"], -1))
    expected = torch.where(mask[..., None], expected, 0.0) / count
    torch.testing.assert_close(grad_pg, expected)

    # Baseline term: d/dV [0.5 (v - V)^2] = -(v - V) only if v is held fixed.
    (grad_v,) = torch.autograd.grad(out.baseline_loss, values, retain_graph=True)
    expected_v = torch.where(mask, -(out.vs - d["v_tm1"]), 0.0) / count
    torch.testing.assert_close(grad_v, expected_v)

    out.total.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert values.grad is not None and values.grad.abs().sum() > 0
    assert behaviour.grad is None and bootstrap.grad is None


def test_pg_gradient_matches_finite_differences() -> None:
    """An independent check of the autograd result above, on one logit."""
    d = make_batch(8)
    advantages = d["advantages"]
    logits = d["logits"].clone().requires_grad_()
    policy_gradient_loss(log_pi_a(logits, d["actions"]), advantages, reduction="sum").backward()
    eps = 1e-6
    for t, b, a in [(0, 0, 0), (2, 1, 3), (3, 2, int(d["actions"][3, 2]))]:
        bumped_up, bumped_down = d["logits"].clone(), d["logits"].clone()
        bumped_up[t, b, a] += eps
        bumped_down[t, b, a] -= eps
        up = policy_gradient_loss(log_pi_a(bumped_up, d["actions"]), advantages, reduction="sum")
        down = policy_gradient_loss(log_pi_a(bumped_down, d["actions"]), advantages,
                                    reduction="sum")
        assert float(logits.grad[t, b, a]) == pytest.approx(float(up - down) / (2 * eps), rel=1e-6)


def test_advantages_and_targets_are_detached() -> None:
    d = make_batch(9)
    advantages = d["advantages"].clone().requires_grad_()
    targets = d["targets"].clone().requires_grad_()
    logits = d["logits"].clone().requires_grad_()
    pg = policy_gradient_loss(log_pi_a(logits, d["actions"]), advantages)
    (pg + baseline_loss(d["v_tm1"], targets)).backward()
    assert advantages.grad is None and targets.grad is None and logits.grad is not None


def test_impala_loss_shape_errors_name_the_argument() -> None:
    d = make_batch(10)
    inputs = impala_inputs(d)
    with pytest.raises(ValueError, match="target_log_probs"):
        impala_loss(**(inputs | {"target_log_probs": inputs["target_log_probs"][..., None]}))
    with pytest.raises(ValueError, match="behaviour_log_probs"):
        impala_loss(**(inputs | {"behaviour_log_probs": inputs["behaviour_log_probs"][:, :2]}))
    with pytest.raises(ValueError, match="entropy"):
        impala_loss(**(inputs | {"entropy": inputs["entropy"][1:]}))
    with pytest.raises(ValueError, match="v_tm1"):
        impala_loss(**(inputs | {"v_tm1": d["v_tm1"][:, :2]}))
    with pytest.raises(ValueError, match="r_t"):
        impala_loss(**(inputs | {"r_t": d["r_t"][1:]}))


def test_reward_clipping_modes_against_scalar_reference() -> None:
    from beast.algo import clip_rewards

    rewards = torch.tensor([-30.0, -1.5, -0.2, 0.0, 0.4, 1.0, 7.0, 100.0])
    reference = {
        "none": list(rewards.tolist()),
        "abs_one": [max(-1.0, min(1.0, r)) for r in rewards.tolist()],
        "soft": [5.0 * math.tanh(r / 5.0) for r in rewards.tolist()],
    }
    for mode, want in reference.items():
        torch.testing.assert_close(clip_rewards(rewards, mode), torch.tensor(want))
    with pytest.raises(ValueError, match="reward clip"):
        clip_rewards(rewards, "sign")
