"""V-MPO pieces against slow references written here (scalar loops in float64), plus the
properties the spec implies: the duals' gradients, the top half ignoring masked steps, returns
cut at terminations and placeholders, and the decoupled Gaussian KLs.
"""

from __future__ import annotations

import math

import pytest
import torch

from beast.algo import (
    TrustRegion,
    decoupled_gaussian_kl,
    n_step_returns,
    positive_dual,
    raw_dual,
    temperature_loss,
    top_half,
    trust_region_loss,
    vmpo_loss,
    vtrace_from_importance_weights,
)
from beast.distributions import Categorical, DiagGaussian, categorical_kl

T, B, A = 6, 3, 4
DIST = Categorical(A)
F64 = torch.float64


def make_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    discounts = torch.full((T, B), 0.9, dtype=F64)
    discounts[2, 0] = 0.0  # terminated after step 2 of env 0
    valid = torch.ones(T, B, dtype=torch.bool)
    valid[3, 0] = False  # ... so step 3 is next-step autoreset's placeholder
    valid[4, 1] = False  # a truncation: discounts stay, the placeholder is bootstrapped from
    old = torch.randn(T, B, A, generator=g, dtype=F64)
    return {
        "logits": old + 0.3 * torch.randn(T, B, A, generator=g, dtype=F64),
        "old_logits": old,
        "actions": torch.randint(A, (T, B), generator=g),
        "v_tm1": torch.randn(T, B, generator=g, dtype=F64),
        "r_t": torch.randn(T, B, generator=g, dtype=F64),
        "discount_t": discounts,
        "bootstrap_value": torch.randn(B, generator=g, dtype=F64),
        "valid": valid,
    }


def reference_returns(d: dict[str, torch.Tensor]) -> torch.Tensor:
    """G_s = sum_{t=s}^{e-1} (prod_{i<t} gamma_i) r_t + (prod gamma) V_e, e = the first
    placeholder after s (V_e = V(x_e)) or T (V_T = bootstrap); G_s = V(x_s) at a placeholder."""
    out = torch.zeros(T, B, dtype=F64)
    for b in range(B):
        for s in range(T):
            if not d["valid"][s, b]:
                out[s, b] = d["v_tm1"][s, b]
                continue
            total, weight, t = 0.0, 1.0, s
            while t < T and d["valid"][t, b]:
                total += weight * float(d["r_t"][t, b])
                weight *= float(d["discount_t"][t, b])
                t += 1
            end = float(d["bootstrap_value"][b]) if t == T else float(d["v_tm1"][t, b])
            out[s, b] = total + weight * end
    return out


def test_n_step_returns_match_loop_with_terminations_and_placeholders() -> None:
    d = make_batch(1)
    args = (d["r_t"], d["discount_t"], d["v_tm1"], d["bootstrap_value"])
    got = n_step_returns(*args, valid=d["valid"])
    torch.testing.assert_close(got, reference_returns(d), rtol=1e-12, atol=1e-12)
    # on-policy V-trace with lambda = 1 computes the same targets
    vtrace = vtrace_from_importance_weights(torch.zeros(T, B, dtype=F64), d["discount_t"],
                                            d["r_t"], d["v_tm1"], d["bootstrap_value"],
                                            valid=d["valid"])
    torch.testing.assert_close(got, vtrace.vs, rtol=1e-12, atol=1e-12)
    # the termination at step 2 of env 0: nothing after it reaches steps 0..2
    later = d["r_t"].clone()
    later[3:, 0] = 100.0
    changed = n_step_returns(later, *args[1:], valid=d["valid"])
    assert torch.equal(changed[:3, 0], got[:3, 0]) and not torch.equal(changed[4:, 0], got[4:, 0])
    # the truncation in env 1: step 3 bootstraps from V(x_4) with the discount kept
    assert float(got[3, 1]) == pytest.approx(float(d["r_t"][3, 1] + 0.9 * d["v_tm1"][4, 1]))
    with pytest.raises(ValueError, match="bootstrap_value"):
        n_step_returns(*args[:3], d["bootstrap_value"][:2])


def reference_top(adv: list[float], ok: list[bool]) -> set[int]:
    candidates = [i for i in range(len(adv)) if ok[i]]
    ranked = sorted(candidates, key=lambda i: -adv[i])  # sorted is stable: ties by position
    return set(ranked[:math.ceil(len(candidates) / 2)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_top_half_matches_sorted_reference_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    adv = torch.randint(-3, 4, (T, B), generator=g).to(F64)  # many ties
    valid = torch.rand(T, B, generator=g) > 0.3
    got = top_half(adv, valid)
    flat = {i for i, x in enumerate(got.reshape(-1).tolist()) if x}
    assert flat == reference_top(adv.reshape(-1).tolist(), valid.reshape(-1).tolist())
    assert int(got.sum()) == math.ceil(int(valid.sum()) / 2)


def test_top_half_ignores_masked_steps() -> None:
    d = make_batch(2)
    valid = d["valid"]
    base = vmpo_loss(**loss_inputs(d, eta=1.3, alpha=4.0), valid=valid)
    assert base.advantages[3, 0] == 0.0 and not base.selected[~valid].any()
    odd = valid.clone()
    odd[0, 2] = False  # 15 valid steps: 8 selected (ceil)
    assert int(top_half(base.advantages, odd).sum()) == 8
    raw = torch.randn(T, B, dtype=F64)
    for bad in (1e9, -1e9, math.nan, math.inf):
        poisoned = raw.clone()
        poisoned[3, 0] = bad  # the largest advantage, but masked
        assert torch.equal(top_half(poisoned, valid), top_half(raw, valid))
        assert not top_half(poisoned, valid)[3, 0]
        # ... and in the whole loss: the placeholder's log-prob, reward and KL change nothing
        changed = {k: x.clone() for k, x in d.items()}
        changed["r_t"][3, 0] = bad
        changed["logits"][3, 0] = bad
        changed["old_logits"][3, 0] = -bad
        out = vmpo_loss(**loss_inputs(changed, eta=1.3, alpha=4.0), valid=valid)
        for name in ("total", "returns", "advantages", "selected", "psi", "selected_fraction"):
            assert torch.equal(getattr(out, name), getattr(base, name)), (bad, name)
    assert float(base.selected_fraction) == pytest.approx(8 / 16)


def loss_inputs(d: dict[str, torch.Tensor], eta: float | torch.Tensor,
                alpha: float | torch.Tensor, epsilon_alpha: float = 0.01) -> dict:
    eta = torch.as_tensor(eta, dtype=F64)
    alpha = torch.as_tensor(alpha, dtype=F64)
    kl = categorical_kl(d["old_logits"], d["logits"])
    return dict(log_probs=DIST.log_prob(d["logits"], d["actions"]), v_tm1=d["v_tm1"],
                bootstrap_value=d["bootstrap_value"], r_t=d["r_t"],
                discount_t=d["discount_t"], eta=eta, epsilon_eta=0.05,
                trust_regions=[TrustRegion(kl, alpha, epsilon_alpha)])


def test_vmpo_loss_matches_loop_reference() -> None:
    d = make_batch(3)
    eta, alpha = 0.7, 3.0
    out = vmpo_loss(**loss_inputs(d, eta, alpha), valid=d["valid"])
    g = reference_returns(d).tolist()
    logp = DIST.log_prob(d["logits"], d["actions"]).tolist()
    ok = [bool(x) for x in d["valid"].reshape(-1)]
    adv = [g[t][b] - float(d["v_tm1"][t, b]) for t in range(T) for b in range(B)]
    top = sorted(reference_top(adv, ok))
    exp_top = [math.exp(adv[i] / eta) for i in top]  # no max subtracted: fine in float64 here
    psi = {i: e / sum(exp_top) for i, e in zip(top, exp_top)}
    n_valid = sum(ok)
    value = sum(0.5 * adv[i] ** 2 for i in range(T * B) if ok[i]) / n_valid
    policy = -sum(psi[i] * logp[i // B][i % B] for i in top)
    temperature = eta * 0.05 + eta * math.log(sum(exp_top) / len(top))
    alpha_loss = alpha * 0.01  # alpha (eps - KL) + alpha KL: the KLs cancel in value
    expected = {"value_loss": value, "policy_loss": policy, "temperature_loss": temperature,
                "alpha_loss": alpha_loss, "total": value + policy + temperature + alpha_loss,
                "selected_fraction": len(top) / n_valid}
    for name, want in expected.items():
        assert float(getattr(out, name).detach()) == pytest.approx(want, rel=1e-10), name
    psi_tensor = torch.tensor([psi.get(i, 0.0) for i in range(T * B)], dtype=F64).reshape(T, B)
    torch.testing.assert_close(out.psi, psi_tensor, rtol=1e-10, atol=1e-12)
    kl = categorical_kl(d["old_logits"], d["logits"])
    assert float(out.kl[0]) == pytest.approx(float(kl[d["valid"]].mean()), rel=1e-12)
    assert float(out.eta) == eta and float(out.alpha[0]) == alpha


def test_temperature_gradient_is_the_closed_form() -> None:
    """d L_eta / d eta = eps_eta + log(mean_top exp(A/eta)) - sum_top psi A / eta."""
    d = make_batch(4)
    eta = torch.tensor(0.8, dtype=F64, requires_grad=True)
    out = vmpo_loss(**loss_inputs(d, eta, 2.0), valid=d["valid"])
    (grad,) = torch.autograd.grad(out.total, eta)  # only L_eta depends on eta
    adv = [float(a) for a, s in zip(out.advantages.reshape(-1), out.selected.reshape(-1)) if s]
    exps = [math.exp(a / 0.8) for a in adv]
    psi = [e / sum(exps) for e in exps]
    closed = 0.05 + math.log(sum(exps) / len(exps)) - sum(p * a for p, a in zip(psi, adv)) / 0.8
    assert float(grad) == pytest.approx(closed, rel=1e-10)
    assert abs(closed) > 1e-3  # the fixture is not at the optimum, where both would be 0


def test_temperature_loss_is_stable_and_shift_equivariant() -> None:
    g = torch.Generator().manual_seed(5)
    adv = torch.randn(T, B, generator=g, dtype=F64)
    selected = top_half(adv)
    eta = torch.tensor(0.01, dtype=F64)  # exp(A / eta) alone would overflow after the shift
    base = temperature_loss(adv, selected, eta, 0.01)
    shifted = temperature_loss(adv + 1e4, selected, eta, 0.01)
    assert torch.isfinite(shifted.loss) and torch.isfinite(shifted.psi).all()
    assert float(shifted.loss - base.loss) == pytest.approx(1e4, rel=1e-12)
    torch.testing.assert_close(shifted.psi, base.psi, rtol=1e-9, atol=1e-12)
    assert float(base.psi.sum()) == pytest.approx(1.0) and (base.psi[~selected] == 0).all()


def test_alpha_gradients_are_eps_minus_kl_and_sg_alpha_times_dkl() -> None:
    d = make_batch(6)
    valid = d["valid"]
    logits = d["logits"].clone().requires_grad_()
    alpha = torch.tensor(3.5, dtype=F64, requires_grad=True)
    kl = categorical_kl(d["old_logits"], logits)
    loss = trust_region_loss(kl, alpha, 0.01, valid=valid)
    grad_alpha, grad_logits = torch.autograd.grad(loss, (alpha, logits))
    mean_kl = float(kl.detach()[valid].mean())
    assert float(grad_alpha) == pytest.approx(0.01 - mean_kl, rel=1e-12)
    assert mean_kl > 0.01  # the fixture violates the bound: the gradient raises alpha
    # d KL(old || p) / d p_logits = softmax(p) - softmax(old); mean over valid steps
    dkl = torch.softmax(d["logits"], -1) - torch.softmax(d["old_logits"], -1)
    expected = 3.5 * torch.where(valid[..., None], dkl, 0.0) / int(valid.sum())
    torch.testing.assert_close(grad_logits, expected, rtol=1e-10, atol=1e-12)


def test_policy_gradient_is_minus_psi_and_values_regress_to_returns() -> None:
    d = make_batch(7)
    valid = d["valid"]
    inputs = loss_inputs(d, 1.0, 5.0)
    log_probs = inputs["log_probs"].clone().requires_grad_()
    values = d["v_tm1"].clone().requires_grad_()
    out = vmpo_loss(**(inputs | {"log_probs": log_probs, "v_tm1": values}), valid=valid)
    grad_logp, grad_v = torch.autograd.grad(out.total, (log_probs, values))
    torch.testing.assert_close(grad_logp, -out.psi)
    assert (grad_logp[~out.selected] == 0).all() and (grad_logp[out.selected] < 0).all()
    expected_v = torch.where(valid, d["v_tm1"] - reference_returns(d), 0.0) / int(valid.sum())
    torch.testing.assert_close(grad_v, expected_v, rtol=1e-10, atol=1e-12)


def gaussian_reference(mean_p, std_p, mean_q, std_q) -> float:
    """KL(N(mean_p, std_p) || N(mean_q, std_q)) summed over entries, by scalars."""
    return sum(math.log(sq / sp) + (sp ** 2 + (mp - mq) ** 2) / (2 * sq ** 2) - 0.5
               for mp, sp, mq, sq in zip(mean_p, std_p, mean_q, std_q))


def test_decoupled_gaussian_kls_match_reference_and_the_full_kl() -> None:
    dist = DiagGaussian((3,))
    g = torch.Generator().manual_seed(8)
    old = torch.randn(T, B, 6, generator=g, dtype=F64)
    new = (old + 0.5 * torch.randn(T, B, 6, generator=g, dtype=F64)).requires_grad_()
    kl_mu, kl_sigma = decoupled_gaussian_kl(dist, old, new)
    assert kl_mu.shape == kl_sigma.shape == (T, B)
    for t in range(T):
        for b in range(B):
            m_o, s_o = old[t, b, :3].tolist(), old[t, b, 3:].exp().tolist()
            m, s = new[t, b, :3].tolist(), new[t, b, 3:].exp().tolist()
            assert float(kl_mu[t, b].detach()) == pytest.approx(
                gaussian_reference(m_o, s_o, m, s_o), rel=1e-10)
            assert float(kl_sigma[t, b].detach()) == pytest.approx(
                gaussian_reference(m_o, s_o, m_o, s), rel=1e-10)
    full = dist.kl(old, new.detach())
    assert not torch.allclose(kl_mu + kl_sigma, full)  # in general the parts do not add up
    # ... but they do when the means or the stds agree
    same_mean = torch.cat([old[..., :3], new.detach()[..., 3:]], -1)
    same_std = torch.cat([new.detach()[..., :3], old[..., 3:]], -1)
    for params, zero_part in ((same_mean, 0), (same_std, 1)):
        parts = decoupled_gaussian_kl(dist, old, params)
        assert (parts[zero_part] == 0).all()
        torch.testing.assert_close(parts[0] + parts[1], dist.kl(old, params))
    # each part moves its own parameters only
    grad_mu = torch.autograd.grad(kl_mu.sum(), new, retain_graph=True)[0]
    grad_sigma = torch.autograd.grad(kl_sigma.sum(), new)[0]
    assert (grad_mu[..., 3:] == 0).all() and (grad_mu[..., :3] != 0).all()
    assert (grad_sigma[..., :3] == 0).all() and (grad_sigma[..., 3:] != 0).all()
    with pytest.raises(ValueError, match="params"):
        decoupled_gaussian_kl(dist, old[..., :4], new[..., :4])


def test_gaussian_trust_regions_each_get_their_own_alpha() -> None:
    d = make_batch(9)
    dist = DiagGaussian((2,))
    g = torch.Generator().manual_seed(9)
    old = torch.randn(T, B, 4, generator=g, dtype=F64)
    params = (old + 0.3 * torch.randn(T, B, 4, generator=g, dtype=F64)).requires_grad_()
    actions = dist.sample(old, g).double()
    alpha_mu = torch.tensor(2.0, dtype=F64, requires_grad=True)
    alpha_sigma = torch.tensor(7.0, dtype=F64, requires_grad=True)
    kl_mu, kl_sigma = decoupled_gaussian_kl(dist, old, params)
    regions = [TrustRegion(kl_mu, alpha_mu, 0.01), TrustRegion(kl_sigma, alpha_sigma, 1e-5)]
    out = vmpo_loss(log_probs=dist.log_prob(params, actions), v_tm1=d["v_tm1"],
                    bootstrap_value=d["bootstrap_value"], r_t=d["r_t"],
                    discount_t=d["discount_t"], eta=torch.tensor(1.0, dtype=F64),
                    trust_regions=regions, valid=d["valid"])
    grad_mu, grad_sigma = torch.autograd.grad(out.total, (alpha_mu, alpha_sigma))
    valid = d["valid"]
    assert float(grad_mu) == pytest.approx(0.01 - float(kl_mu.detach()[valid].mean()))
    assert float(grad_sigma) == pytest.approx(1e-5 - float(kl_sigma.detach()[valid].mean()))
    assert float(out.alpha_loss.detach()) == pytest.approx(2.0 * 0.01 + 7.0 * 1e-5)
    assert len(out.kl) == 2 and float(out.kl[1]) > 0


@pytest.mark.parametrize("value", [1e-3, 1.0, 5.0, 50.0])
def test_duals_round_trip_and_stay_positive(value: float) -> None:
    raw = raw_dual(value).double().requires_grad_()
    dual = positive_dual(raw)
    assert float(dual.detach()) == pytest.approx(value, rel=1e-6)
    (grad,) = torch.autograd.grad(dual, raw)
    assert 0 < float(grad) <= 1  # softplus' slope: the dual never gets stuck
    assert float(positive_dual(torch.tensor(-1e3))) > 0
    with pytest.raises(ValueError, match="dual"):
        raw_dual(0.0)


def test_an_all_masked_batch_gives_zero_losses_with_finite_gradients() -> None:
    d = make_batch(10)
    eta = torch.tensor(1.0, dtype=F64, requires_grad=True)
    none_valid = torch.zeros(T, B, dtype=torch.bool)
    out = vmpo_loss(**loss_inputs(d, eta, 5.0), valid=none_valid)
    assert float(out.total.detach()) == 0.0 and not out.selected.any()
    (grad,) = torch.autograd.grad(out.total, eta)
    assert float(grad) == 0.0


def test_shape_errors_name_the_argument() -> None:
    d = make_batch(11)
    inputs = loss_inputs(d, 1.0, 5.0)
    for name in ("log_probs", "v_tm1", "r_t", "discount_t"):
        with pytest.raises(ValueError, match=name):
            vmpo_loss(**(inputs | {name: inputs[name][:, :2]}))
    region = inputs["trust_regions"][0]
    with pytest.raises(ValueError, match=r"trust_regions\[0\]"):
        vmpo_loss(**(inputs | {"trust_regions": [region._replace(kl=region.kl[1:])]}))
    with pytest.raises(ValueError, match="eta"):
        vmpo_loss(**(inputs | {"eta": torch.ones(1, dtype=F64)}))
    with pytest.raises(ValueError, match="alpha"):
        vmpo_loss(**(inputs | {"trust_regions": [region._replace(alpha=torch.ones(2))]}))
