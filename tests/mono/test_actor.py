"""Exact data-path checks of the actor's unrolls on deterministic counting envs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from beast.acting import UnrollWorker
from beast.config import ModelConfig
from beast.distributions import categorical_sample
from beast.envs import make_vector_env
from beast.models import PolicyValueMLP, build_model
from beast.rollout import RolloutSpec, finished_episodes, stack_slots

T, K = 7, 3


def unrolls(env_id: str, count: int) -> tuple[list[dict[str, np.ndarray]], PolicyValueMLP]:
    envs = make_vector_env(env_id, K)
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(8,)))
    assert isinstance(model, PolicyValueMLP)
    worker = UnrollWorker(envs, model, T, seed=1)
    spec = RolloutSpec.build(envs.single_observation_space, model)
    out = []
    for version in range(count):
        slot = spec.allocate((T + 1, K))
        worker.fill(slot, version)
        out.append(slot)
    return out, model


def concatenated(slots: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Steps 0..T of the first unroll, then steps 1..T of each later one (a continuous stream)."""
    return {k: np.concatenate([slots[0][k]] + [s[k][1:] for s in slots[1:]]) for k in slots[0]}


def test_counting_env_stream_is_exact() -> None:
    import tests.envs.counting_env  # noqa: F401  (registers the ids)

    slots, model = unrolls("Counting-v0", 4)
    stream = concatenated(slots)
    # Episodes last 5 steps, then one reset step: counts 0,1,2,3,4,5,0,1,...
    expected_count = np.arange(len(stream["obs"])) % 6
    for env in range(K):
        np.testing.assert_array_equal(stream["obs"][:, env, 0], expected_count)
        np.testing.assert_array_equal(stream["terminated"][:, env], expected_count == 5)
        assert not stream["truncated"][:, env].any()
        # The reward of a step is the count it arrives at; 0 at the first and the reset steps.
        np.testing.assert_array_equal(stream["reward"][:, env], expected_count)
        np.testing.assert_array_equal(stream["episode_step"][:, env], expected_count)
        np.testing.assert_array_equal(stream["episode_return"][:, env],
                                      expected_count * (expected_count + 1) / 2)


def test_step_zero_repeats_previous_last_step_and_records_versions() -> None:
    import tests.envs.counting_env  # noqa: F401

    slots, model = unrolls("Counting-v0", 3)
    for previous, current in zip(slots, slots[1:]):
        for key in previous:
            np.testing.assert_array_equal(current[key][0], previous[key][T], err_msg=key)
    for version, slot in enumerate(slots):
        # step 0 was chosen by the previous unroll's weights; steps 1..T by this one's.
        np.testing.assert_array_equal(slot["policy_version"][1:], version)
        assert slot["policy_version"][0, 0] == max(version - 1, 0)
    for slot in slots:  # nothing left poisoned, and the policy parameters (logits) are the model's
        for key, value in slot.items():
            if value.dtype.kind == "f":
                assert not np.isnan(value).any(), key
        assert ((slot["action"] >= 0) & (slot["action"] < 3)).all()
        with torch.no_grad():
            expected = model(torch.from_numpy(slot["obs"])).policy_params.numpy()
        np.testing.assert_allclose(slot["policy_params"], expected, rtol=1e-5, atol=1e-6)


def test_truncation_is_kept_apart_from_termination() -> None:
    import tests.envs.counting_env  # noqa: F401

    stream = concatenated(unrolls("CountingTruncated-v0", 3)[0])
    counts = np.arange(len(stream["obs"])) % 7  # TimeLimit 6, then a reset step
    np.testing.assert_array_equal(stream["truncated"][:, 0], counts == 6)
    assert not stream["terminated"].any()
    returns, lengths = finished_episodes(stack_slots({k: v[None] for k, v in stream.items()},
                                                     [0]))
    assert (lengths == 6).all() and (returns == 21).all()


def test_finished_episodes_counts_each_episode_once() -> None:
    import tests.envs.counting_env  # noqa: F401

    slots, _ = unrolls("Counting-v0", 6)
    counted = [finished_episodes(s) for s in slots]
    stream = concatenated(slots)
    # Ends at steps 0..T-1 of each unroll; one at step T is counted by the next unroll.
    assert sum(len(r) for r, _ in counted) == stream["terminated"][:-1].sum()
    assert all((r == 15).all() and (n == 5).all() for r, n in counted)


def test_gumbel_sampling_matches_softmax_frequencies() -> None:
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7]])).expand(20000, 3)
    actions = categorical_sample(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(actions, minlength=3).float() / len(actions)
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.7]), atol=0.015)


def test_unknown_env_id_says_how_to_list_ids() -> None:
    with pytest.raises(ValueError, match="python -m beast.envs"):
        make_vector_env("NoSuchEnv-v0", 2)


def test_episodic_life_reports_whole_games() -> None:
    """A lost life is `terminated` for the learner, but the running return goes on until the
    game is over, and finished_episodes reports one episode per game."""
    import tests.envs.counting_env  # noqa: F401

    slots, _ = unrolls("CountingLives-v0", 8)
    stream = concatenated(slots)
    # Per life: counts 0..5 then the reset step; three lives per game (18 steps).
    life_count = np.arange(len(stream["obs"])) % 6
    game_step = np.arange(len(stream["obs"])) % 18
    np.testing.assert_array_equal(stream["terminated"][:, 0], life_count == 5)
    np.testing.assert_array_equal(stream["episode_step"][:, 0], game_step)
    returns, lengths = zip(*(finished_episodes(s) for s in slots))
    returns, lengths = np.concatenate(returns), np.concatenate(lengths)
    assert len(returns) == K * ((len(stream["obs"]) - 1) // 18)  # one per game, not per life
    assert (returns == 3 * 15).all() and (lengths == 17).all()
