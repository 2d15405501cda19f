"""The IMPACT and V-MPO objectives inside the learner: what is optimised, the target copies and
their periods, the duals, the adaptive KL coefficient, and checkpoints that continue exactly."""

from __future__ import annotations

import io

import pytest
import torch

from beast.acting import UnrollWorker
from beast.algo.impact import impact_loss
from beast.algo.vmpo import positive_dual
from beast.config import ImpactConfig, LossConfig, ModelConfig, OptimConfig, VmpoConfig
from beast.envs import make_vector_env
from beast.learner import Learner
from beast.models import build_model
from beast.objectives import ImpactObjective, VmpoObjective, build_objective
from beast.rollout import RolloutSpec

T, K = 9, 4
COUNTING = "Counting-v0"  # Discrete(3) actions (tests/envs/counting_env.py)
PENDULUM = "Pendulum-v1"  # Box(1) actions: a Gaussian policy


def make_learner(env_id: str, loss: str, impact: ImpactConfig | None = None,
                 vmpo: VmpoConfig | None = None, seed: int = 0, use_lstm: bool = False
                 ) -> tuple[Learner, UnrollWorker]:
    """A learner on `loss` and a worker producing [T+1, K] batches from `env_id` with it."""
    import tests.envs.counting_env  # noqa: F401

    envs = make_vector_env(env_id, K)
    torch.manual_seed(seed)
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(8,), use_lstm=use_lstm))
    objective = build_objective(LossConfig(loss=loss), model, impact=impact, vmpo=vmpo)
    learner = Learner(model, objective, OptimConfig(lr_decay="none"), total_steps=10**6)
    return learner, UnrollWorker(envs, model, T, seed=seed)


def next_batch(learner: Learner, worker: UnrollWorker) -> dict[str, torch.Tensor]:
    slot = RolloutSpec.build(worker.envs.single_observation_space, learner.model
                             ).allocate((T + 1, K))
    worker.fill(slot, learner.version)
    return {k: torch.from_numpy(v) for k, v in slot.items()}


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                  b.state_dict().values(), strict=True))


@pytest.mark.parametrize("loss, frozen", [("impact", "target"), ("vmpo", "old")])
def test_target_nets_are_not_optimised_and_the_duals_are(loss: str, frozen: str) -> None:
    learner, _ = make_learner(COUNTING, loss)
    target = getattr(learner.objective, frozen)
    optimised = {id(p) for group in learner.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in target.parameters()}
    assert {id(p) for p in learner.model.parameters()} <= optimised
    duals = {id(p) for p in learner.objective.parameters() if p.requires_grad}
    assert duals <= optimised and len(duals) == (2 if loss == "vmpo" else 0)
    # the online model is referenced, not owned: the objective's state is its own
    assert not any(key.startswith("online") for key in learner.objective.state_dict())


def test_impact_at_its_first_step_is_impact_loss_with_the_online_net_as_target() -> None:
    config = ImpactConfig(impact_clip_epsilon=0.3, impact_clip_is=1.5)
    learner, worker = make_learner(COUNTING, "impact", impact=config)
    batch = next_batch(learner, worker)
    output = learner.model(batch["obs"])
    dist = learner.model.dist
    # The rollout's convention written out by hand: transition t is (o_t, a_t, reward[t+1]).
    params, actions = output.policy_params[:-1], batch["action"][:-1]
    r_t = batch["reward"][1:]
    discount_t = LossConfig().discount * (~batch["terminated"][1:]).float()
    valid = ~(batch["terminated"][:-1] | batch["truncated"][:-1])
    expected = impact_loss(
        online_log_probs=dist.log_prob(params, actions),
        target_log_probs=dist.log_prob(params.detach(), actions),
        behaviour_log_probs=dist.log_prob(batch["policy_params"][:-1], actions),
        entropy=dist.entropy(params), v_tm1=output.baseline[:-1],
        bootstrap_value=output.baseline[-1].detach(), r_t=r_t, discount_t=discount_t,
        valid=valid, clip_epsilon=0.3, clip_is_threshold=1.5,
        clip_pg_rho_threshold=LossConfig().clip_pg_rho)
    result = learner.objective(output, batch)
    torch.testing.assert_close(result.loss, expected.total)
    assert float(result.metrics["impact/kl"]) == 0.0
    assert float(result.metrics["impact/clip_frac"]) == 0.0


@pytest.mark.parametrize("loss, frozen, period", [("impact", "target", 3), ("vmpo", "old", 4)])
def test_the_target_is_the_online_net_of_every_period_th_step(loss: str, frozen: str,
                                                             period: int) -> None:
    learner, worker = make_learner(COUNTING, loss, impact=ImpactConfig(impact_target_period=3),
                                   vmpo=VmpoConfig(vmpo_target_period=4))
    target = getattr(learner.objective, frozen)
    copied = None
    for step in range(2 * period + 1):
        if step % period == 0:
            copied = {k: v.clone() for k, v in learner.model.state_dict().items()}
        learner.step(next_batch(learner, worker), env_steps=0)
        assert all(torch.equal(v, copied[k]) for k, v in target.state_dict().items()), step
        assert int(learner.objective.steps) == step + 1
    assert not same_weights(target, learner.model)


@pytest.mark.parametrize("loss, kl", [("impact", "impact/kl"), ("vmpo", "vmpo/kl")])
def test_a_recurrent_target_is_replayed_from_the_actors_state_like_the_online_net(
        loss: str, kl: str) -> None:
    """At the first step the target is the online net: a KL of exactly 0 means it saw the
    same observations, initial core state and end flags as the learner's forward pass."""
    learner, worker = make_learner(COUNTING, loss, use_lstm=True)
    batch = next_batch(learner, worker)
    batch["core_state"][0] = torch.randn_like(batch["core_state"][0])  # not the zero state
    assert learner.step(batch, env_steps=0).metrics[kl] == 0.0


def test_impact_default_period_is_two_n_k() -> None:
    assert ImpactConfig().target_period == 2 * 4 * 2
    assert ImpactConfig(reuse_buffer_size=16, reuse_max_uses=20).target_period == 640
    assert ImpactConfig(impact_target_period=5).target_period == 5


def test_impact_kl_coefficient_adapts_only_when_the_penalty_is_on() -> None:
    off, worker = make_learner(COUNTING, "impact", impact=ImpactConfig(impact_target_period=50))
    for _ in range(3):
        metrics = off.step(next_batch(off, worker), env_steps=0).metrics
    assert float(off.objective.kl_coef) == 0.0 and metrics["impact/kl_coef"] == 0.0
    assert metrics["impact/kl"] > 0  # the policy moved away from the target

    on, worker = make_learner(COUNTING, "impact",
                              impact=ImpactConfig(impact_target_period=50, impact_kl_coef=0.5,
                                                  impact_kl_target=1.0))
    coefs = []
    for _ in range(3):
        on.step(next_batch(on, worker), env_steps=0)
        coefs.append(float(on.objective.kl_coef))
    assert coefs == [0.25, 0.125, 0.0625]  # KL far below target / 1.5: halved each step
    on.objective.kl_coef.fill_(2e-6)
    on.step(next_batch(on, worker), env_steps=0)
    assert float(on.objective.kl_coef) == 1e-6  # the floor: halving never reaches 0


@pytest.mark.parametrize("env_id, alphas", [(COUNTING, {"vmpo/alpha": 5.0}),
                                            (PENDULUM, {"vmpo/alpha_mu": 1.0,
                                                        "vmpo/alpha_sigma": 1.0})])
def test_vmpo_duals_start_as_configured_stay_positive_and_learn(env_id: str,
                                                                alphas: dict[str, float]) -> None:
    learner, worker = make_learner(env_id, "vmpo")
    raw = {name: p.detach().clone() for name, p in learner.objective.named_parameters()
           if p.requires_grad}
    assert len(raw) == 1 + len(alphas)
    metrics = learner.step(next_batch(learner, worker), env_steps=0).metrics
    assert metrics["vmpo/eta"] == pytest.approx(1.0, rel=1e-5)
    for name, value in alphas.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5)
        assert name.replace("alpha", "kl") in metrics
    assert 0.45 <= metrics["vmpo/selected_frac"] <= 0.55
    for _ in range(3):
        learner.step(next_batch(learner, worker), env_steps=0)
    for name, p in learner.objective.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, raw[name]), name  # optimised with the model
            assert float(positive_dual(p.detach())) > 0


def roundtrip(state: dict) -> dict:
    """Through bytes, loaded as checkpoints are: weights_only."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("env_id, loss", [(COUNTING, "impact"), (COUNTING, "vmpo"),
                                          (PENDULUM, "impact"), (PENDULUM, "vmpo")])
def test_checkpoint_restores_targets_counters_and_duals_and_continues_exactly(
        env_id: str, loss: str) -> None:
    impact = ImpactConfig(impact_target_period=3, impact_kl_coef=0.1)
    vmpo = VmpoConfig(vmpo_target_period=3)
    first, worker = make_learner(env_id, loss, impact, vmpo)
    for _ in range(4):  # past a copy: the target is neither the initial nor the online net
        first.step(next_batch(first, worker), env_steps=0)
    saved = roundtrip(first.state_dict())
    second, _ = make_learner(env_id, loss, impact, vmpo, seed=1)  # other weights everywhere
    second.load_state_dict(saved)
    objective_state = first.objective.state_dict()
    own = {"steps", "kl_coef", "target.baseline.weight"} if loss == "impact" else \
        {"steps", "raw_eta", "old.baseline.weight"}
    assert own <= set(objective_state)
    for key, value in second.objective.state_dict().items():
        assert torch.equal(value, objective_state[key]), key
    assert int(second.objective.steps) == 4
    batches = [next_batch(first, worker) for _ in range(3)]  # a second copy comes at step 6
    for batch in batches:
        a = first.step(batch, env_steps=0).metrics
        b = second.step(batch, env_steps=0).metrics
        assert a == b
    assert same_weights(first.objective, second.objective)
    assert same_weights(first.model, second.model)


def test_build_objective_reads_only_the_chosen_loss_group() -> None:
    learner, _ = make_learner(COUNTING, "impala")
    assert not list(learner.objective.state_dict())
    odd = ImpactConfig(impact_clip_epsilon=0.01, reuse_max_uses=9)
    model = learner.model
    assert isinstance(build_objective(LossConfig(loss="impact"), model, impact=odd),
                      ImpactObjective)
    objective = build_objective(LossConfig(loss="vmpo"), model, impact=odd,
                                vmpo=VmpoConfig(vmpo_eta_init=3.0))
    assert isinstance(objective, VmpoObjective)
    assert float(positive_dual(objective.raw_eta.detach())) == pytest.approx(3.0)
