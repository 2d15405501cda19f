"""Models: torso choice and shapes, the LSTM core's done-masking against a slow reference, and
the recurrent data path (actor records the state, the learner replays it exactly)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import tests.envs.counting_env  # noqa: F401  (registers the counting envs)
from beast.acting import UnrollWorker
from beast.config import LossConfig, ModelConfig, OptimConfig
from beast.envs import make_vector_env
from beast.learner import Learner
from beast.models import PolicyValueMLP, PolicyValueNet, build_model
from beast.models.atari import ImpalaResNet, NatureCNN
from beast.models.core import LSTMCore
from beast.objectives import build_objective
from beast.rollout import RolloutSpec

ATARI = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
MINATAR = gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)  # as beast.envs.minatar serves it
FLAT = gym.spaces.Box(-1, 1, (3,), np.float32)
ACTIONS = gym.spaces.Discrete(6)


@pytest.mark.parametrize(("space", "torso", "torso_type"), [
    (ATARI, "auto", NatureCNN), (MINATAR, "auto", ImpalaResNet), (ATARI, "resnet", ImpalaResNet)])
def test_image_models_pick_their_torso_and_shape_outputs(space, torso, torso_type) -> None:
    model = build_model(space, ACTIONS, ModelConfig(torso=torso))
    assert isinstance(model, PolicyValueNet) and isinstance(model.torso, torso_type)
    assert model.core_state_shape is None and model.initial_state(2) is None
    obs = torch.from_numpy(np.stack([space.sample() for _ in range(6)]).reshape(3, 2, *space.shape))
    out = model(obs)
    assert out.policy_params.shape == (3, 2, 6) and out.baseline.shape == (3, 2)
    assert out.core_state is None and torch.isfinite(out.policy_params).all()


@pytest.mark.parametrize(("space", "high"), [(ATARI, 255), (MINATAR, 1)])
def test_integer_observations_are_scaled_by_their_upper_bound(space, high) -> None:
    """Atari pixels by 255, MinAtar's 0/1 grids not at all: both reach the convolutions in [0, 1]."""
    model = build_model(space, ACTIONS, ModelConfig())
    full = torch.full((1, *space.shape), high, dtype=torch.uint8)
    unit = model.torso.fc(model.torso.convs(torch.ones(1, *space.shape)))  # 1.0, unscaled
    torch.testing.assert_close(model.torso(full), unit)
    assert model.torso.input_scale == pytest.approx(1 / high)


def test_flat_observations_keep_the_mlp_and_bad_choices_say_why() -> None:
    assert isinstance(build_model(FLAT, ACTIONS, ModelConfig()), PolicyValueMLP)
    with pytest.raises(ValueError, match="at least 36x36"):
        build_model(MINATAR, ACTIONS, ModelConfig(torso="nature"))
    with pytest.raises(ValueError, match="image observations"):
        build_model(FLAT, ACTIONS, ModelConfig(torso="resnet"))
    with pytest.raises(ValueError, match="channels-last"):
        build_model(gym.spaces.Box(0, 255, (210, 160, 3), np.uint8), ACTIONS, ModelConfig())


def reference_lstm(core: LSTMCore, features: torch.Tensor, state: torch.Tensor,
                   done: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One env and one step at a time, with the LSTM equations written out."""
    lstm = core.lstm
    T, B, _ = features.shape
    outputs = torch.zeros(T, B, core.hidden_size)
    final = torch.zeros_like(state)
    for b in range(B):
        h, c = state[b, 0, 0].clone(), state[b, 1, 0].clone()
        for t in range(T):
            gates = (lstm.weight_ih_l0 @ features[t, b] + lstm.bias_ih_l0
                     + lstm.weight_hh_l0 @ h + lstm.bias_hh_l0)
            i, f, g, o = gates.chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs[t, b] = h
            if done[t, b]:  # o_t ended an episode: the next step starts from zeros
                h, c = torch.zeros_like(h), torch.zeros_like(c)
        final[b, 0, 0], final[b, 1, 0] = h, c
    return outputs, final


@pytest.mark.parametrize("with_ends", [True, False])  # the per-step and the fused path
def test_lstm_core_matches_reference(with_ends: bool) -> None:
    torch.manual_seed(0)
    core = LSTMCore(5, 4)
    features = torch.randn(6, 3, 5)
    state = torch.randn(3, 2, 1, 4)
    done = torch.zeros(6, 3, dtype=torch.bool)
    if with_ends:
        done[1, 0] = done[4, 0] = done[2, 2] = done[5, 1] = True
    with torch.no_grad():
        got, got_state = core(features, state, done)
        want, want_state = reference_lstm(core, features, state, done)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_state, want_state, atol=1e-5, rtol=1e-5)
    if with_ends:
        assert (got_state[1] == 0).all()  # env 1 ended at the last step


def recurrent_unrolls(count: int) -> tuple[list[dict[str, np.ndarray]], torch.nn.Module]:
    """Counting env (5-step episodes + a reset step) with T=7, so episodes end inside unrolls
    and straddle unroll boundaries."""
    torch.manual_seed(1)
    envs = make_vector_env("Counting-v0", 3)
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(8,), use_lstm=True))
    worker = UnrollWorker(envs, model, 7, seed=1)
    spec = RolloutSpec.build(envs.single_observation_space, model)
    assert spec.fields["core_state"].shape == model.core_state_shape
    slots = []
    for version in range(count):
        slot = spec.allocate((8, 3))
        worker.fill(slot, version)
        slots.append(slot)
    return slots, model


def test_recurrent_state_resets_at_episode_start_and_carries_across_unrolls() -> None:
    slots, model = recurrent_unrolls(4)
    for previous, current in zip(slots, slots[1:]):
        np.testing.assert_array_equal(current["core_state"][0], previous["core_state"][-1])
    for slot in slots:
        first_steps = slot["episode_step"] == 0  # a fresh episode's first observation
        assert (slot["core_state"][first_steps] == 0).all()
        assert (np.abs(slot["core_state"][~first_steps]).sum(axis=(1, 2, 3)) > 0).all()


def test_learner_replay_reproduces_the_actor_exactly() -> None:
    """From core_state[0] and the rollout's own end flags, the learner's forward pass gives the
    actor's policy parameters (logits) and baselines at every step, across episode ends inside
    the unroll."""
    slots, model = recurrent_unrolls(3)
    for slot in slots:
        batch = {k: torch.from_numpy(v) for k, v in slot.items()}
        done = batch["terminated"] | batch["truncated"]
        assert done[:-1].any()  # the unroll crosses an episode end
        with torch.no_grad():
            out = model(batch["obs"], batch["core_state"][0], done)
        torch.testing.assert_close(out.policy_params, batch["policy_params"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.baseline, batch["baseline"], atol=1e-5, rtol=1e-5)


def test_learner_feeds_the_loss_the_actors_outputs(monkeypatch) -> None:
    """Learner.step replays from core_state[0] with the rollout's end flags: with the actor's
    weights, the logits and values it hands the objective are the ones the actor acted with,
    and so the loss sees target log-probs equal to the behaviour ones."""
    import beast.objectives.impala

    slots, model = recurrent_unrolls(2)
    seen = {}
    original = beast.objectives.impala.impala_loss

    def capture(**kwargs):
        seen.update(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(beast.objectives.impala, "impala_loss", capture)
    objective = build_objective(LossConfig(), model)
    outputs = []

    def objective_inputs(output, batch):
        outputs.append(output)
        return objective(output, batch)

    learner = Learner(model, objective, OptimConfig(), total_steps=10**6)
    learner.objective = objective_inputs  # what the learner hands its objective
    batch = {k: torch.from_numpy(v) for k, v in slots[1].items()}
    learner.step(batch, env_steps=0)
    (output,) = outputs
    torch.testing.assert_close(output.policy_params.detach(), batch["policy_params"],
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(output.baseline.detach(), batch["baseline"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen["v_tm1"].detach(), batch["baseline"][:-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(seen["target_log_probs"].detach(), seen["behaviour_log_probs"],
                               atol=1e-5, rtol=1e-5)


def test_the_seed_fixes_the_initial_weights() -> None:
    """The CLI builds the model before training starts: --seed must already apply there (it
    did not for a while, and serial runs stopped being repeatable)."""
    from beast.config import Config, RunConfig
    from beast.training import build_env_model

    first = build_env_model(Config(run=RunConfig(seed=3)))[0].state_dict()
    torch.rand(5)  # whatever ran in between
    again = build_env_model(Config(run=RunConfig(seed=3)))[0].state_dict()
    other = build_env_model(Config(run=RunConfig(seed=4)))[0].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
