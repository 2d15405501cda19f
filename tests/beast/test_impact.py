"""IMPACT loss against a slow reference written here (scalar loops in float64), plus the
properties the spec needs: with the target net equal to the online one and no clipping, IMPACT
has IMPALA's gradient; the surrogate's gradient is the clipped-PPO one; masked steps leak
nothing; the KL penalty and its adaptive coefficient do what they say.
"""

from __future__ import annotations

import math

import pytest
import torch

from beast.algo import adapt_kl_coef, impact_loss, impala_loss
from beast.distributions import Categorical, categorical_entropy, categorical_kl

T, B, A = 5, 3, 4
DIST = Categorical(A)
INF = math.inf


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    valid = torch.rand(T, B, generator=g) > 0.25
    valid[0, 0], valid[2, 1] = True, False
    discounts = torch.full((T, B), 0.9, dtype=torch.float64)
    discounts[1, 2] = 0.0  # a termination mid-unroll
    behaviour = torch.randn(T, B, A, generator=g, dtype=torch.float64)
    return {
        "logits": behaviour + 0.8 * torch.randn(T, B, A, generator=g, dtype=torch.float64),
        "target_logits": behaviour + 1.5 * torch.randn(T, B, A, generator=g, dtype=torch.float64),
        "behaviour_logits": behaviour,
        "actions": torch.randint(A, (T, B), generator=g),
        "v_tm1": torch.randn(T, B, generator=g, dtype=torch.float64),
        "r_t": torch.randn(T, B, generator=g, dtype=torch.float64),
        "discount_t": discounts,
        "bootstrap_value": torch.randn(B, generator=g, dtype=torch.float64),
        "valid": valid,
    }


def inputs(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(
        online_log_probs=DIST.log_prob(d["logits"], d["actions"]),
        target_log_probs=DIST.log_prob(d["target_logits"], d["actions"]),
        behaviour_log_probs=DIST.log_prob(d["behaviour_logits"], d["actions"]),
        entropy=categorical_entropy(d["logits"]), v_tm1=d["v_tm1"],
        bootstrap_value=d["bootstrap_value"], r_t=d["r_t"], discount_t=d["discount_t"])


def clip(x: float, threshold: float | None) -> float:
    return x if threshold is None else min(threshold, x)


def reference(d, *, valid, kl_coef, baseline_cost, entropy_cost, eps, rho_tw, clip_rho,
              clip_c, clip_pg, reduction):
    """Every term by scalar loops: V-trace backwards per env, then the surrogate per step."""
    lp = {k: DIST.log_prob(d[k], d["actions"]).tolist()
          for k in ("logits", "target_logits", "behaviour_logits")}
    v, r, gam = d["v_tm1"].tolist(), d["r_t"].tolist(), d["discount_t"].tolist()
    ok = [[valid is None or bool(valid[t, b]) for b in range(B)] for t in range(T)]
    vs = [[0.0] * B for _ in range(T)]
    adv = [[0.0] * B for _ in range(T)]
    for b in range(B):
        def value(t: int) -> float:
            return float(d["bootstrap_value"][b]) if t == T else v[t][b]

        correction = 0.0
        for t in reversed(range(T)):
            rho = math.exp(lp["target_logits"][t][b] - lp["behaviour_logits"][t][b])
            if not ok[t][b]:
                correction = 0.0
            else:
                delta = clip(rho, clip_rho) * (r[t][b] + gam[t][b] * value(t + 1) - v[t][b])
                correction = delta + gam[t][b] * clip(rho, clip_c) * correction
            vs[t][b] = v[t][b] + correction
        for t in range(T):
            rho = math.exp(lp["target_logits"][t][b] - lp["behaviour_logits"][t][b])
            v_next = float(d["bootstrap_value"][b]) if t == T - 1 else vs[t + 1][b]
            if ok[t][b]:
                adv[t][b] = clip(rho, clip_pg) * (r[t][b] + gam[t][b] * v_next - v[t][b])
    terms = {"policy": 0.0, "baseline": 0.0, "entropy": 0.0, "kl": 0.0, "clipped": 0.0}
    ratios = [[1.0] * B for _ in range(T)]
    count = 0
    for t in range(T):
        for b in range(B):
            if not ok[t][b]:
                continue
            count += 1
            pi, tgt, mu = (math.exp(lp[k][t][b]) for k in lp)
            ratio = clip(mu / tgt, rho_tw) * pi / mu
            ratios[t][b] = ratio
            bounded = max(1 - eps, min(1 + eps, ratio))
            terms["policy"] -= min(ratio * adv[t][b], bounded * adv[t][b])
            terms["baseline"] += 0.5 * (vs[t][b] - v[t][b]) ** 2
            p = torch.softmax(d["logits"][t, b], -1).tolist()
            q = torch.softmax(d["target_logits"][t, b], -1).tolist()
            terms["entropy"] += sum(x * math.log(x) for x in p)
            terms["kl"] += sum(qi * math.log(qi / pi_) for qi, pi_ in zip(q, p))
            terms["clipped"] += float(abs(ratio - 1) > eps)
    scale = 1.0 if reduction == "sum" else 1.0 / count
    terms = {k: x * (scale if k != "clipped" else 1.0 / count) for k, x in terms.items()}
    terms["total"] = (terms["policy"] + baseline_cost * terms["baseline"]
                      + entropy_cost * terms["entropy"] + kl_coef * terms["kl"])
    return terms, *(torch.tensor(x, dtype=torch.float64) for x in (vs, adv, ratios))


@pytest.mark.parametrize("use_mask", [True, False])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_impact_matches_loop_reference(use_mask: bool, reduction: str) -> None:
    d = make_batch(1)
    valid = d["valid"] if use_mask else None
    options = dict(kl_coef=0.3, baseline_cost=0.7, entropy_cost=0.05, clip_epsilon=0.4,
                   clip_is_threshold=2.0, clip_rho_threshold=1.3, clip_c_threshold=0.9,
                   clip_pg_rho_threshold=1.1, reduction=reduction)
    kl = categorical_kl(d["target_logits"], d["logits"])
    out = impact_loss(**inputs(d), valid=valid, kl=kl, **options)
    terms, vs, adv, ratios = reference(
        d, valid=valid, kl_coef=0.3, baseline_cost=0.7, entropy_cost=0.05, eps=0.4, rho_tw=2.0,
        clip_rho=1.3, clip_c=0.9, clip_pg=1.1, reduction=reduction)
    for name, got in [("total", out.total), ("policy", out.policy_loss), ("kl", out.kl_loss),
                      ("baseline", out.baseline_loss), ("entropy", out.entropy_loss),
                      ("clipped", out.clip_fraction)]:
        assert float(got) == pytest.approx(terms[name], rel=1e-10, abs=1e-12), name
    torch.testing.assert_close(out.vs, vs, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.pg_advantages, adv, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out.ratios, ratios, rtol=1e-10, atol=1e-10)
    # The fixture must exercise both clips, or this test would not check them.
    assert 0 < terms["clipped"] < 1
    mu_over_tgt = torch.exp(inputs(d)["behaviour_log_probs"] - inputs(d)["target_log_probs"])
    assert (mu_over_tgt > 2.0).any() and (mu_over_tgt < 2.0).any()


def test_surrogate_gradient_is_the_clipped_ppo_score() -> None:
    """d/dlog pi of -min(rA, clip(r)A) is -rA where the unclipped term is the min, else 0."""
    d = make_batch(2)
    tensors = inputs(d)
    online = tensors["online_log_probs"].clone().requires_grad_()
    out = impact_loss(**(tensors | {"online_log_probs": online}), valid=d["valid"])
    (grad,) = torch.autograd.grad(out.policy_loss, online)
    count = int(d["valid"].sum())
    ratios, adv = out.ratios.tolist(), out.pg_advantages.tolist()
    expected = torch.zeros(T, B, dtype=torch.float64)
    for t in range(T):
        for b in range(B):
            r, a = ratios[t][b], adv[t][b]
            if d["valid"][t, b] and r * a <= max(0.6, min(1.4, r)) * a:
                expected[t, b] = -r * a / count
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)
    assert (expected == 0)[d["valid"]].any() and (expected != 0).any()  # both cases occur


@pytest.mark.parametrize("vtrace_clips", [(None, None, None), (1.0, 1.0, 1.0), (3.7, 1.0, 2.2)])
@pytest.mark.parametrize("eps", [INF, 0.4])
def test_reduces_to_impala_when_target_is_online_and_clipping_is_off(vtrace_clips, eps) -> None:
    """pi_tgt = pi_theta and rho_bar_tw = inf make r = pi/pi_tgt = 1 with grad log pi, so every
    gradient equals IMPALA's (eps cannot bind at r = 1). The policy terms differ in value only:
    -mean A here against -mean log pi * A there."""
    d = make_batch(3)
    clip_rho, clip_c, clip_pg = vtrace_clips
    vtrace = dict(clip_rho_threshold=clip_rho, clip_c_threshold=clip_c,
                  clip_pg_rho_threshold=clip_pg, valid=d["valid"], reduction="mean")
    grads = []
    for use_impact in (True, False):
        logits = d["logits"].clone().requires_grad_()
        values = d["v_tm1"].clone().requires_grad_()
        tensors = inputs(d | {"logits": logits, "v_tm1": values})
        if use_impact:
            out = impact_loss(**(tensors | {"target_log_probs": tensors["online_log_probs"]}),
                              clip_epsilon=eps, clip_is_threshold=INF, **vtrace)
            assert float(out.clip_fraction) == 0.0
            assert torch.equal(out.ratios, torch.ones(T, B, dtype=torch.float64))
            expected_policy = float(-out.pg_advantages[d["valid"]].mean())
            assert float(out.policy_loss.detach()) == pytest.approx(expected_policy, abs=1e-12)
        else:
            online = tensors.pop("online_log_probs")
            out = impala_loss(**(tensors | {"target_log_probs": online}), **vtrace)
        grads.append((out, torch.autograd.grad(out.total, (logits, values))))
    (impact, impact_grads), (impala, impala_grads) = grads
    for got, want in zip(impact_grads, impala_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
        assert want.abs().sum() > 0
    torch.testing.assert_close(impact.vs, impala.vs)
    torch.testing.assert_close(impact.pg_advantages, impala.pg_advantages)
    assert torch.equal(impact.baseline_loss, impala.baseline_loss)
    assert torch.equal(impact.entropy_loss, impala.entropy_loss)


def test_truncation_and_a_separate_target_change_the_gradient() -> None:
    """Guards the reduction test: the options it turns off are not silently ignored."""
    d = make_batch(4)

    def logit_grad(**options) -> torch.Tensor:
        logits = d["logits"].clone().requires_grad_()
        out = impact_loss(**inputs(d | {"logits": logits}), valid=d["valid"], **options)
        return torch.autograd.grad(out.total, logits)[0]

    base = logit_grad(clip_epsilon=INF, clip_is_threshold=INF)
    assert not torch.allclose(base, logit_grad(clip_epsilon=INF, clip_is_threshold=2.0))
    assert not torch.allclose(base, logit_grad(clip_epsilon=0.4, clip_is_threshold=INF))
    torch.testing.assert_close(base, logit_grad(clip_epsilon=INF, clip_is_threshold=None))


def test_kl_penalty_adds_coef_times_mean_kl_with_its_gradient() -> None:
    d = make_batch(5)
    logits = d["logits"].clone().requires_grad_()
    tensors = inputs(d | {"logits": logits})
    kl = categorical_kl(d["target_logits"], logits)
    with_kl = impact_loss(**tensors, valid=d["valid"], kl=kl, kl_coef=0.25)
    without = impact_loss(**tensors, valid=d["valid"])
    assert float(without.kl_loss) == 0.0
    mean_kl = float(kl.detach()[d["valid"]].mean())
    assert mean_kl > 0 and float(with_kl.kl_loss.detach()) == pytest.approx(mean_kl, rel=1e-12)
    difference = with_kl.total - without.total
    assert float(difference.detach()) == pytest.approx(0.25 * mean_kl, rel=1e-10)
    (grad,) = torch.autograd.grad(difference, logits)
    # d KL(q || p) / d p_logits = softmax(p) - softmax(q), per valid step, over the count
    expected = 0.25 * (torch.softmax(d["logits"], -1) - torch.softmax(d["target_logits"], -1))
    expected = torch.where(d["valid"][..., None], expected, 0.0) / int(d["valid"].sum())
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-12)


def test_adapt_kl_coef_doubles_halves_or_keeps() -> None:
    assert adapt_kl_coef(0.2, kl=0.016, target=0.01) == pytest.approx(0.4)
    assert adapt_kl_coef(0.2, kl=0.006, target=0.01) == pytest.approx(0.1)
    for kl in (0.0067, 0.01, 0.0149):
        assert adapt_kl_coef(0.2, kl=kl, target=0.01) == 0.2
    assert adapt_kl_coef(0.2, kl=0.1, target=0.01, factor=1.5) == pytest.approx(0.3)
    with pytest.raises(ValueError, match="target"):
        adapt_kl_coef(0.2, kl=0.1, target=0.0)


def test_invalid_steps_leak_into_neither_loss_nor_gradient() -> None:
    d = make_batch(6)
    valid = d["valid"]
    clean = inputs(d) | {"kl": categorical_kl(d["target_logits"], d["logits"])}
    poisoned = {k: x.clone() for k, x in clean.items()}
    for name, bad in [("online_log_probs", math.nan), ("target_log_probs", -INF),
                      ("behaviour_log_probs", math.nan), ("entropy", INF), ("kl", math.nan),
                      ("r_t", math.nan)]:
        poisoned[name][~valid] = bad
    results = []
    for tensors in (clean, poisoned):
        online = tensors["online_log_probs"].clone().requires_grad_()
        out = impact_loss(**(tensors | {"online_log_probs": online}), valid=valid, kl_coef=0.1)
        results.append((out.total, torch.autograd.grad(out.total, online)[0]))
    (total, grad), (total_poisoned, grad_poisoned) = results
    assert torch.isfinite(total_poisoned) and torch.equal(total_poisoned, total)
    assert torch.isfinite(grad_poisoned).all() and torch.equal(grad_poisoned, grad)
    assert (grad_poisoned[~valid] == 0).all() and (grad[valid] != 0).any()


def test_shape_errors_name_the_argument() -> None:
    tensors = inputs(make_batch(7))
    for name in ("online_log_probs", "target_log_probs", "behaviour_log_probs", "entropy",
                 "v_tm1", "r_t"):
        with pytest.raises(ValueError, match=name):
            impact_loss(**(tensors | {name: tensors[name][1:, None]}))
    with pytest.raises(ValueError, match="kl"):
        impact_loss(**tensors, kl=tensors["entropy"][:, :1])
    with pytest.raises(ValueError, match="clip_epsilon"):
        impact_loss(**tensors, clip_epsilon=0.0)
