"""V-trace against a slow closed-form reference written here, plus properties that must hold.

The reference is deliberately naive (a double loop over the closed form of the spec) so that a
bug in the vectorised recursion cannot be mirrored in it.
"""

from __future__ import annotations

import pytest
import torch

from beast.algo import VTraceReturns, vtrace_from_importance_weights, vtrace_from_logits

T = 5
CLIP_RHO, CLIP_PG_RHO = 3.7, 2.2


def spec_fixture(batch: int, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """The losses spec's reference inputs (the spec is not shipped): deterministic,
    off-policy, varied discounts."""
    n = T * batch
    arange = torch.arange(n, dtype=dtype)
    return {
        "log_rhos": (5 * (arange / n - 0.5)).reshape(T, batch),
        "discount_t": (0.9 / (torch.arange(batch, dtype=dtype) + 1)).expand(T, batch).clone(),
        "r_t": arange.reshape(T, batch).clone(),
        "v_tm1": (arange / batch).reshape(T, batch),
        "bootstrap_value": torch.arange(batch, dtype=dtype) + 1,
    }


def random_inputs(batch: int, seed: int, length: int = T) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "log_rhos": torch.randn(length, batch, generator=g, dtype=torch.float64),
        "discount_t": 0.5 + 0.5 * torch.rand(length, batch, generator=g, dtype=torch.float64),
        "r_t": torch.randn(length, batch, generator=g, dtype=torch.float64),
        "v_tm1": torch.randn(length, batch, generator=g, dtype=torch.float64),
        "bootstrap_value": torch.randn(batch, generator=g, dtype=torch.float64),
    }


def reference_vtrace(log_rhos, discount_t, r_t, v_tm1, bootstrap_value, *, clip_rho=1.0,
                     clip_c=1.0, clip_pg_rho=1.0, lambda_=1.0) -> VTraceReturns:
    """v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) delta_t, by plain loops."""
    length, batch = log_rhos.shape
    rhos = torch.exp(log_rhos)
    vs = torch.zeros_like(v_tm1)
    adv = torch.zeros_like(v_tm1)
    for b in range(batch):
        def value(t: int) -> torch.Tensor:
            return bootstrap_value[b] if t == length else v_tm1[t, b]

        def rho(t: int) -> torch.Tensor:
            return torch.clamp(rhos[t, b], max=clip_rho)

        def c(t: int) -> torch.Tensor:
            return lambda_ * torch.clamp(rhos[t, b], max=clip_c)

        for s in range(length):
            total = v_tm1[s, b]
            for t in range(s, length):
                weight = 1.0
                for i in range(s, t):
                    weight = weight * discount_t[i, b] * c(i)
                delta = rho(t) * (r_t[t, b] + discount_t[t, b] * value(t + 1) - v_tm1[t, b])
                total = total + weight * delta
            vs[s, b] = total
        for s in range(length):
            v_next = bootstrap_value[b] if s == length - 1 else vs[s + 1, b]
            pg_rho = torch.clamp(rhos[s, b], max=clip_pg_rho)
            adv[s, b] = pg_rho * (r_t[s, b] + discount_t[s, b] * v_next - v_tm1[s, b])
    return VTraceReturns(vs=vs, pg_advantages=adv)


def run(inputs: dict[str, torch.Tensor], **options) -> VTraceReturns:
    return vtrace_from_importance_weights(
        inputs["log_rhos"], inputs["discount_t"], inputs["r_t"], inputs["v_tm1"],
        inputs["bootstrap_value"], **options)


def assert_returns_close(actual: VTraceReturns, expected: VTraceReturns, **tol) -> None:
    torch.testing.assert_close(actual.vs, expected.vs, **tol)
    torch.testing.assert_close(actual.pg_advantages, expected.pg_advantages, **tol)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("lambda_", [1.0, 0.5])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_matches_closed_form_reference(batch: int, lambda_: float, dtype: torch.dtype,
                                       tol: float) -> None:
    inputs = spec_fixture(batch, dtype)
    expected = reference_vtrace(**spec_fixture(batch), clip_rho=CLIP_RHO, clip_pg_rho=CLIP_PG_RHO,
                                lambda_=lambda_)
    actual = run(inputs, clip_rho_threshold=CLIP_RHO, clip_pg_rho_threshold=CLIP_PG_RHO,
                 lambda_=lambda_)
    assert actual.vs.dtype == dtype and actual.vs.shape == (T, batch)
    assert_returns_close(actual, VTraceReturns(*(x.to(dtype) for x in expected)),
                         rtol=tol, atol=tol)


def test_lambda_changes_the_targets_and_c_bar_is_applied() -> None:
    """Guards the reference test against options that are silently ignored."""
    inputs = spec_fixture(5)
    base = run(inputs, clip_rho_threshold=CLIP_RHO)
    assert not torch.allclose(base.vs, run(inputs, clip_rho_threshold=CLIP_RHO, lambda_=0.5).vs)
    loose_c = run(inputs, clip_rho_threshold=CLIP_RHO, clip_c_threshold=2.0)
    assert not torch.allclose(base.vs, loose_c.vs)
    assert_returns_close(loose_c, reference_vtrace(**inputs, clip_rho=CLIP_RHO, clip_c=2.0))


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_split_at_episode_boundary_changes_nothing(k: int) -> None:
    """gamma_k = 0 ends the episode at step k: the halves are independent unrolls."""
    inputs = random_inputs(batch=4, seed=k, length=T)
    inputs["discount_t"][k] = 0.0
    options = dict(clip_rho_threshold=CLIP_RHO, clip_pg_rho_threshold=CLIP_PG_RHO)
    full = run(inputs, **options)
    second = run({name: x[k + 1:] for name, x in inputs.items() if name != "bootstrap_value"}
                 | {"bootstrap_value": inputs["bootstrap_value"]}, **options)
    for arbitrary in (torch.full((4,), 1e3, dtype=torch.float64),
                      torch.full((4,), -7.0, dtype=torch.float64)):
        first = run({name: x[:k + 1] for name, x in inputs.items() if name != "bootstrap_value"}
                    | {"bootstrap_value": arbitrary}, **options)
        joined = VTraceReturns(*(torch.cat([a, b]) for a, b in zip(first, second)))
        assert_returns_close(full, joined, rtol=1e-12, atol=1e-12)


def test_no_clipping_equals_clipping_at_infinity() -> None:
    inputs = spec_fixture(5)
    unclipped = run(inputs, clip_rho_threshold=None, clip_c_threshold=None,
                    clip_pg_rho_threshold=None)
    huge = run(inputs, clip_rho_threshold=1e9, clip_c_threshold=1e9, clip_pg_rho_threshold=1e9)
    assert_returns_close(unclipped, huge, rtol=1e-12, atol=1e-12)
    # The fixture has weights up to e^2.5, so default clipping must change the result.
    assert not torch.allclose(unclipped.vs, run(inputs).vs)
    assert not torch.allclose(unclipped.pg_advantages, run(inputs).pg_advantages)


@pytest.mark.parametrize("batch", [1, 5])
def test_on_policy_targets_are_n_step_returns(batch: int) -> None:
    inputs = spec_fixture(batch)
    inputs["log_rhos"] = torch.zeros(T, batch, dtype=torch.float64)
    returns = torch.zeros(T, batch, dtype=torch.float64)
    g = inputs["bootstrap_value"].clone()
    for t in reversed(range(T)):
        g = inputs["r_t"][t] + inputs["discount_t"][t] * g
        returns[t] = g
    out = run(inputs)
    torch.testing.assert_close(out.vs, returns, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out.pg_advantages, returns - inputs["v_tm1"],
                               rtol=1e-12, atol=1e-12)


def segment(inputs: dict[str, torch.Tensor], start: int, stop: int, bootstrap: torch.Tensor,
            b: int) -> dict[str, torch.Tensor]:
    """Steps [start, stop) of environment b as a [stop - start, 1] unroll."""
    seg = {name: x[start:stop, b:b + 1] for name, x in inputs.items() if name != "bootstrap_value"}
    return seg | {"bootstrap_value": bootstrap.reshape(1)}


@pytest.mark.parametrize("k", [0, 2, T - 1])
def test_placeholder_step_cuts_the_trace_but_is_bootstrapped_from(k: int) -> None:
    batch = 3
    inputs = random_inputs(batch, seed=10 + k)
    valid = torch.ones(T, batch, dtype=torch.bool)
    valid[k, 1] = False  # environment 1 only: the others must be untouched
    options = dict(clip_rho_threshold=CLIP_RHO, clip_pg_rho_threshold=CLIP_PG_RHO)
    out = run(inputs, valid=valid, **options)
    assert out.vs[k, 1] == inputs["v_tm1"][k, 1]
    assert out.pg_advantages[k, 1] == 0.0

    b = 1
    if k > 0:  # before: an unroll ending at x_k, bootstrapped from V(x_k)
        before = reference_vtrace(**segment(inputs, 0, k, inputs["v_tm1"][k, b], b),
                                  clip_rho=CLIP_RHO, clip_pg_rho=CLIP_PG_RHO)
        assert_returns_close(VTraceReturns(out.vs[:k, b:b + 1], out.pg_advantages[:k, b:b + 1]),
                             before, rtol=1e-10, atol=1e-10)
    if k < T - 1:  # after: an unroll starting at x_{k+1}, bootstrapped as given
        after = reference_vtrace(**segment(inputs, k + 1, T, inputs["bootstrap_value"][b], b),
                                 clip_rho=CLIP_RHO, clip_pg_rho=CLIP_PG_RHO)
        tail = VTraceReturns(out.vs[k + 1:, b:b + 1], out.pg_advantages[k + 1:, b:b + 1])
        assert_returns_close(tail, after, rtol=1e-10, atol=1e-10)
    others = run(inputs, **options)
    for b in (0, 2):
        torch.testing.assert_close(out.vs[:, b], others.vs[:, b])
        torch.testing.assert_close(out.pg_advantages[:, b], others.pg_advantages[:, b])


def test_placeholder_inputs_do_not_leak_even_if_not_finite() -> None:
    """Reward, weight and discount at a placeholder are meaningless: nothing may depend on them."""
    inputs = random_inputs(2, seed=3)
    valid = torch.ones(T, 2, dtype=torch.bool)
    valid[2] = False
    out = run(inputs, valid=valid)
    poisoned = {name: x.clone() for name, x in inputs.items()}
    poisoned["r_t"][2] = float("nan")
    poisoned["log_rhos"][2] = float("inf")
    poisoned["discount_t"][2] = 0.123
    out_poisoned = run(poisoned, valid=valid)
    assert torch.isfinite(out_poisoned.vs).all()
    assert torch.isfinite(out_poisoned.pg_advantages).all()
    assert_returns_close(out_poisoned, out, rtol=0, atol=0)
    # Whereas V(x_2) is what step 1 bootstraps from: changing it must change v_1.
    moved = {name: x.clone() for name, x in inputs.items()}
    moved["v_tm1"][2] += 1.0
    assert not torch.allclose(run(moved, valid=valid).vs[1], out.vs[1])


def test_from_logits_matches_importance_weights_from_categorical() -> None:
    g = torch.Generator().manual_seed(0)
    batch, num_actions = 4, 3
    behaviour = torch.randn(T, batch, num_actions, generator=g)
    target = torch.randn(T, batch, num_actions, generator=g, requires_grad=True)
    actions = torch.randint(num_actions, (T, batch), generator=g)
    inputs = {k: v.float() for k, v in random_inputs(batch, seed=1).items()}
    valid = torch.rand(T, batch, generator=g) > 0.2
    out = vtrace_from_logits(behaviour, target, actions, inputs["discount_t"], inputs["r_t"],
                             inputs["v_tm1"], inputs["bootstrap_value"], valid=valid,
                             clip_rho_threshold=CLIP_RHO)

    log_mu = torch.distributions.Categorical(logits=behaviour).log_prob(actions)
    log_pi = torch.distributions.Categorical(logits=target.detach()).log_prob(actions)
    torch.testing.assert_close(out.behaviour_action_log_probs, log_mu)
    torch.testing.assert_close(out.target_action_log_probs.detach(), log_pi)
    torch.testing.assert_close(out.log_rhos, log_pi - log_mu)
    expected = run(inputs | {"log_rhos": log_pi - log_mu}, valid=valid, clip_rho_threshold=CLIP_RHO)
    assert_returns_close(VTraceReturns(out.vs, out.pg_advantages), expected)
    # Documented gradient contract: action log-probs keep history, the V-trace outputs do not.
    assert out.target_action_log_probs.requires_grad
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad
    assert not out.log_rhos.requires_grad


def test_outputs_are_stop_gradient() -> None:
    inputs = {k: v.requires_grad_() for k, v in random_inputs(2, seed=4).items()}
    out = run(inputs)
    assert not out.vs.requires_grad and not out.pg_advantages.requires_grad


@pytest.mark.parametrize("name", ["log_rhos", "discount_t", "r_t", "v_tm1", "bootstrap_value",
                                  "valid"])
def test_shape_errors_name_the_argument(name: str) -> None:
    inputs = random_inputs(3, seed=5)
    valid = torch.ones(T, 3, dtype=torch.bool)
    if name == "valid":
        valid = valid[:, :2]
    elif name == "log_rhos":
        inputs[name] = inputs[name].reshape(-1)
    else:
        inputs[name] = inputs[name][..., :2]
    with pytest.raises(ValueError, match=name):
        run(inputs, valid=valid)


@pytest.mark.parametrize("name", ["behaviour_policy_logits", "target_policy_logits", "a_tm1"])
def test_from_logits_shape_errors_name_the_argument(name: str) -> None:
    inputs = random_inputs(3, seed=6)
    args = {"behaviour_policy_logits": torch.zeros(T, 3, 2),
            "target_policy_logits": torch.zeros(T, 3, 2),
            "a_tm1": torch.zeros(T, 3, dtype=torch.int64)}
    args[name] = args[name][:, :2]
    with pytest.raises(ValueError, match=name):
        vtrace_from_logits(args["behaviour_policy_logits"], args["target_policy_logits"],
                           args["a_tm1"], inputs["discount_t"], inputs["r_t"],
                           inputs["v_tm1"], inputs["bootstrap_value"])


def test_invalid_options_are_rejected() -> None:
    inputs = random_inputs(2, seed=7)
    with pytest.raises(ValueError, match="lambda_"):
        run(inputs, lambda_=1.5)
    with pytest.raises(ValueError, match="clip_c_threshold"):
        run(inputs, clip_c_threshold=0.0)
    with pytest.raises(ValueError, match="valid must be a bool"):
        run(inputs, valid=torch.ones(T, 2))
