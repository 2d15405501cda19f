"""The one time-index convention (beast.algo.timestep): `align_rollout` against a slow reference
written from the rollout's definition, the V-trace targets it feeds against returns walked
through the raw rollout, and the objectives and the learner aligning through it."""

from __future__ import annotations

import pytest
import torch

import beast
from beast.algo import (AlignedTransitions, align_rollout, impala_loss, positive_dual,
                        vmpo_loss, vtrace_from_importance_weights)
from beast.algo.vmpo import TrustRegion
from beast.config import LossConfig
from beast.objectives import ImpalaObjective
from tests.beast.test_objectives import COUNTING, make_learner, next_batch

T, B, GAMMA = 6, 4, 0.9
# Episode ends (entry index, env): env 0 terminates at entry 2 and truncates at 5; env 1's
# step 0 is the final observation of the previous unroll (truncated); env 2 terminates at the
# last entry; env 3 runs through.
TERMINATED = [(2, 0), (0, 2), (T, 2)]
TRUNCATED = [(5, 0), (0, 1)]


def hand_rollout() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    terminated = torch.zeros(T + 1, B, dtype=torch.bool)
    truncated = torch.zeros(T + 1, B, dtype=torch.bool)
    for i, b in TERMINATED:
        terminated[i, b] = True
    for i, b in TRUNCATED:
        truncated[i, b] = True
    return {
        "obs": torch.randn(T + 1, B, 2, generator=g),
        "action": torch.randint(3, (T + 1, B), generator=g),
        "reward": torch.randn(T + 1, B, generator=g),
        "terminated": terminated,
        "truncated": truncated,
        "policy_params": torch.randn(T + 1, B, 3, generator=g),
        "policy_version": torch.randint(10, (T + 1, B), generator=g),
    }


def reference_alignment(rollout: dict[str, torch.Tensor], values: torch.Tensor, discount: float
                        ) -> dict[str, list]:
    """Transition t leaves entry t and reaches entry t+1; written element by element."""
    out: dict[str, list] = {k: [[None] * B for _ in range(T)] for k in
                            ("a_tm1", "r_t", "discount_t", "valid", "mu_tm1", "version_tm1",
                             "v_tm1")}
    for t in range(T):
        for b in range(B):
            left_final = bool(rollout["terminated"][t, b]) or bool(rollout["truncated"][t, b])
            out["a_tm1"][t][b] = int(rollout["action"][t, b])
            out["r_t"][t][b] = float(rollout["reward"][t + 1, b])
            out["discount_t"][t][b] = 0.0 if rollout["terminated"][t + 1, b] else discount
            out["valid"][t][b] = not left_final
            out["mu_tm1"][t][b] = rollout["policy_params"][t, b].tolist()
            out["version_tm1"][t][b] = int(rollout["policy_version"][t, b])
            out["v_tm1"][t][b] = float(values[t, b])
    out["bootstrap_value"] = [float(values[T, b]) for b in range(B)]
    return out


def test_align_rollout_matches_the_slow_reference() -> None:
    rollout = hand_rollout()
    values = torch.randn(T + 1, B, requires_grad=True)
    steps = align_rollout(rollout, GAMMA, values=values)
    expected = reference_alignment(rollout, values.detach(), GAMMA)
    assert isinstance(steps, AlignedTransitions) and steps.length == T
    for name, want in expected.items():
        got = getattr(steps, name).detach()
        if got.is_floating_point():
            torch.testing.assert_close(got, torch.tensor(want, dtype=got.dtype), msg=name)
        else:
            assert got.tolist() == want, name
    assert steps.valid.dtype == torch.bool and steps.discount_t.dtype == torch.float32
    # v_tm1 trains the critic; the bootstrap value is a target only.
    assert steps.v_tm1.requires_grad and not steps.bootstrap_value.requires_grad
    # the cases the fixture was built for
    assert not steps.valid[2, 0] and steps.valid[1, 0] and steps.discount_t[1, 0] == 0.0
    assert steps.valid[4, 0] and steps.discount_t[4, 0] == pytest.approx(GAMMA)  # truncation
    assert not steps.valid[0, 1] and not steps.valid[0, 2]
    assert steps.discount_t[T - 1, 2] == 0.0 and steps.valid[T - 1, 2]


def test_optional_fields_are_none_without_their_keys_and_at_tm1_checks_length() -> None:
    rollout = {k: v for k, v in hand_rollout().items()
               if k not in ("policy_params", "policy_version")}
    steps = align_rollout(rollout, torch.tensor(0.5))
    assert steps.mu_tm1 is None and steps.version_tm1 is None
    assert steps.v_tm1 is None and steps.bootstrap_value is None
    logits = torch.randn(T + 1, B, 3)
    assert torch.equal(steps.at_tm1(logits), logits[:T])
    with pytest.raises(ValueError, match="T\\+1"):
        steps.at_tm1(logits[:T])  # already aligned: not cut twice


@pytest.mark.parametrize("key, change", [
    ("reward", lambda x: x[0]),
    ("terminated", lambda x: x.float()),
    ("truncated", lambda x: x[:-1]),
    ("action", lambda x: x[:, :2]),
    ("policy_params", lambda x: x[1:]),
])
def test_malformed_rollouts_name_the_key(key: str, change) -> None:
    rollout = hand_rollout()
    rollout[key] = change(rollout[key])
    with pytest.raises(ValueError, match=key):
        align_rollout(rollout, GAMMA)


def test_missing_keys_and_wrong_values_are_named() -> None:
    rollout = hand_rollout()
    with pytest.raises(ValueError, match="values"):
        align_rollout(rollout, GAMMA, values=torch.zeros(T, B))
    del rollout["truncated"]
    with pytest.raises(ValueError, match="truncated"):
        align_rollout(rollout, GAMMA)


def walked_returns(rollout: dict[str, torch.Tensor], values: torch.Tensor, discount: float
                   ) -> torch.Tensor:
    """The return from o_t, walking the raw rollout forwards: rewards reward[t+1], reward[t+2],
    ... until an episode end (terminated: stop; truncated: add V of that final observation) or
    the unroll's end (add V(o_T)). At a final observation o_t the action is a placeholder and
    the target is V(o_t) itself."""
    out = torch.zeros(T, B, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            if rollout["terminated"][t, b] or rollout["truncated"][t, b]:
                out[t, b] = float(values[t, b])
                continue
            total, weight, i = 0.0, 1.0, t
            while True:
                i += 1
                total += weight * float(rollout["reward"][i, b])
                if rollout["terminated"][i, b]:
                    break
                weight *= discount
                if rollout["truncated"][i, b] or i == T:
                    total += weight * float(values[i, b])
                    break
            out[t, b] = total
    return out


def test_on_policy_vtrace_of_an_aligned_rollout_is_the_walked_return() -> None:
    """The whole convention at once: with pi = mu and lambda = 1 the V-trace targets are the
    plain returns, which the reference reads off the rollout without any index arithmetic."""
    rollout = {k: v.double() if v.is_floating_point() else v for k, v in hand_rollout().items()}
    values = torch.randn(T + 1, B, dtype=torch.float64)
    steps = align_rollout(rollout, GAMMA, values=values)
    out = vtrace_from_importance_weights(torch.zeros(T, B, dtype=torch.float64),
                                         steps.discount_t, steps.r_t, steps.v_tm1,
                                         steps.bootstrap_value, valid=steps.valid)
    torch.testing.assert_close(out.vs, walked_returns(rollout, values, GAMMA))


class Recorder:
    """Wraps align_rollout and counts calls, so a test can see who aligns through it."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args, **kwargs) -> AlignedTransitions:
        self.calls += 1
        return align_rollout(*args, **kwargs)


@pytest.mark.parametrize("loss", ["impala", "impact", "vmpo"])
def test_the_objectives_and_the_learner_align_through_align_rollout(
        monkeypatch: pytest.MonkeyPatch, loss: str) -> None:
    import beast.learner
    import beast.objectives.base

    learner, worker = make_learner(COUNTING, loss)
    objectives, diagnostics = Recorder(), Recorder()
    monkeypatch.setattr(beast.objectives.base, "align_rollout", objectives)
    monkeypatch.setattr(beast.learner, "align_rollout", diagnostics)
    result = learner.step(next_batch(learner, worker), env_steps=0)
    assert objectives.calls == 1 and diagnostics.calls == 1
    assert result.valid.shape == (9, 4)


def hand_sliced(batch: dict[str, torch.Tensor], output, discount: float,
                rewards: torch.Tensor) -> dict:
    """The inputs as learner.py and the objectives sliced them before align_rollout existed
    (`rewards`: batch["reward"][1:] as the loss's config transforms it)."""
    return {
        "actions": batch["action"][:-1],
        "params": output.policy_params[:-1],
        "mu": batch["policy_params"][:-1],
        "v_tm1": output.baseline[:-1],
        "bootstrap_value": output.baseline[-1].detach(),
        "r_t": rewards,
        "discount_t": discount * (~batch["terminated"][1:]).float(),
        "valid": ~(batch["terminated"][:-1] | batch["truncated"][:-1]),
    }


def test_impala_objective_is_bit_for_bit_the_hand_sliced_loss() -> None:
    config = LossConfig(reward_scale=3.0, reward_clip="abs_one")  # the transform is applied
    learner, worker = make_learner(COUNTING, "impala")
    objective = ImpalaObjective(config, learner.model.dist)
    batch = next_batch(learner, worker)
    assert (batch["terminated"] | batch["truncated"])[:-1].any()  # the convention matters
    output = learner.model(batch["obs"])
    rewards = (config.reward_scale * batch["reward"][1:]).clamp(-1.0, 1.0)
    s, dist = hand_sliced(batch, output, config.discount, rewards), learner.model.dist
    expected = impala_loss(
        target_log_probs=dist.log_prob(s["params"], s["actions"]),
        behaviour_log_probs=dist.log_prob(s["mu"], s["actions"]),
        entropy=dist.entropy(s["params"]), v_tm1=s["v_tm1"],
        bootstrap_value=s["bootstrap_value"], r_t=s["r_t"], discount_t=s["discount_t"],
        valid=s["valid"], baseline_cost=config.baseline_cost, entropy_cost=config.entropy_cost,
        clip_rho_threshold=config.clip_rho, clip_c_threshold=config.clip_c,
        clip_pg_rho_threshold=config.clip_pg_rho, lambda_=config.vtrace_lambda,
        reduction=config.reduction)
    assert torch.equal(objective(output, batch).loss, expected.total)


def test_vmpo_objective_is_bit_for_bit_the_hand_sliced_loss() -> None:
    learner, worker = make_learner(COUNTING, "vmpo")
    objective, config = learner.objective, learner.objective.config
    batch = next_batch(learner, worker)
    output = learner.model(batch["obs"])
    # the default recipe: no reward scale, no clip
    s, dist = hand_sliced(batch, output, config.discount, batch["reward"][1:]), learner.model.dist
    old = s["params"].detach()  # at the first step pi_old is the online net
    region = TrustRegion(dist.kl(old, s["params"]), positive_dual(objective.raw_alpha),
                         objective.vmpo.vmpo_epsilon_alpha)
    expected = vmpo_loss(
        log_probs=dist.log_prob(s["params"], s["actions"]), v_tm1=s["v_tm1"],
        bootstrap_value=s["bootstrap_value"], r_t=s["r_t"], discount_t=s["discount_t"],
        eta=positive_dual(objective.raw_eta), trust_regions=[region], valid=s["valid"],
        epsilon_eta=objective.vmpo.vmpo_epsilon_eta)
    assert torch.equal(objective(output, batch).loss, expected.total)


def test_align_rollout_is_public() -> None:
    assert beast.align_rollout is align_rollout and beast.AlignedTransitions is AlignedTransitions
    assert {"align_rollout", "AlignedTransitions"} <= set(beast.__all__)
