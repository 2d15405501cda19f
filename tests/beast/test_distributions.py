"""Action distributions against slow float64 references written here, extreme parameters
included (the 30M-step CartPole collapse showed entropy and KL values no distribution has)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from beast.distributions import (Categorical, DiagGaussian, MultiDiscrete, action_distribution,
                                 categorical_entropy, categorical_kl)

EXTREME_LOGITS = torch.tensor([
    [0.0, 0.0],
    [1e30, -1e30],
    [-1e30, 1e30],
    [88.0, -88.0],
    [1e4, 1e4 - 1e-3],
    [3e38, 0.0],
    [-3e38, -3e38],
    [0.0, -math.inf],  # a masked action
], dtype=torch.float32)


def reference_log_softmax(logits: list[float]) -> list[float]:
    finite = [x for x in logits if x != -math.inf]
    top = max(finite)
    total = sum(math.exp(x - top) for x in finite)
    return [(x - top) - math.log(total) if x != -math.inf else -math.inf for x in logits]


def reference_entropy(logits: list[float]) -> float:
    return -sum(math.exp(lp) * lp for lp in reference_log_softmax(logits) if math.exp(lp) > 0)


FLOAT32_TINY = 1.4e-45  # a probability below the smallest float32 is 0 in float32


def reference_kl(p: list[float], q: list[float]) -> float:
    lp, lq = reference_log_softmax(p), reference_log_softmax(q)
    return sum(math.exp(a) * (a - b) for a, b in zip(lp, lq) if math.exp(a) > FLOAT32_TINY)


def as_lists(t: torch.Tensor) -> list[list[float]]:
    return [[float(x) for x in row] for row in t.double()]


def test_categorical_entropy_and_log_probs_are_exact_for_extreme_logits() -> None:
    dist = Categorical(2)
    entropy = dist.entropy(EXTREME_LOGITS)
    assert torch.isfinite(entropy).all()
    for row, h in zip(as_lists(EXTREME_LOGITS), entropy.tolist()):
        assert 0.0 <= h <= math.log(2) + 1e-7
        assert h == pytest.approx(reference_entropy(row), abs=1e-6)
    for action in (0, 1):
        got = dist.log_prob(EXTREME_LOGITS, torch.full((len(EXTREME_LOGITS),), action))
        for row, value in zip(as_lists(EXTREME_LOGITS), got.tolist()):
            want = reference_log_softmax(row)[action]
            assert value == pytest.approx(want, rel=1e-6, abs=1e-6) or value == want == -math.inf


def test_categorical_kl_is_exact_and_never_negative_for_extreme_logits() -> None:
    rows = as_lists(EXTREME_LOGITS)
    for i, p in enumerate(rows):
        for j, q in enumerate(rows):
            got = float(categorical_kl(EXTREME_LOGITS[i], EXTREME_LOGITS[j]))
            want = reference_kl(p, q)
            if math.isinf(want):
                assert got == math.inf or got > 1e30
                continue
            assert got >= 0.0
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6), (p, q)


def test_categorical_matches_reference_on_random_logits_of_every_scale() -> None:
    generator = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1.0, 30.0, 1e3, 1e6):
        p = torch.randn(64, 5, generator=generator) * scale
        q = torch.randn(64, 5, generator=generator) * scale
        kl = categorical_kl(p, q)
        h = categorical_entropy(p)
        for a, b, k, e in zip(as_lists(p), as_lists(q), kl.tolist(), h.tolist()):
            assert k >= 0.0 and 0.0 <= e <= math.log(5) + 1e-6
            assert k == pytest.approx(reference_kl(a, b), rel=1e-4, abs=1e-5)
            assert e == pytest.approx(reference_entropy(a), rel=1e-4, abs=1e-6)
        assert torch.equal(categorical_kl(p, p), torch.zeros(64))


def test_categorical_sampling_follows_the_probabilities_and_the_generator() -> None:
    dist = Categorical(3)
    logits = torch.log(torch.tensor([0.2, 0.5, 0.3])).expand(40_000, 3)
    draws = dist.sample(logits, torch.Generator().manual_seed(1))
    freq = torch.bincount(draws, minlength=3).float() / len(draws)
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.5, 0.3]), atol=0.01, rtol=0)
    again = dist.sample(logits, torch.Generator().manual_seed(1))
    assert torch.equal(draws, again)


def gaussian_reference(mean: list[float], log_std: list[float], action: list[float]) -> float:
    return sum(-0.5 * ((a - m) / math.exp(s)) ** 2 - s - 0.5 * math.log(2 * math.pi)
               for m, s, a in zip(mean, log_std, action))


def test_gaussian_log_prob_entropy_and_kl_match_the_formulas() -> None:
    dist = DiagGaussian((3,))
    generator = torch.Generator().manual_seed(2)
    p = torch.randn(32, 6, generator=generator) * 2
    q = torch.randn(32, 6, generator=generator) * 2
    actions = torch.randn(32, 3, generator=generator) * 3
    logp = dist.log_prob(p, actions)
    for row, a, value in zip(as_lists(p), as_lists(actions), logp.tolist()):
        assert value == pytest.approx(gaussian_reference(row[:3], row[3:], a), rel=1e-5, abs=1e-4)
    for row, value in zip(as_lists(p), dist.entropy(p).tolist()):
        want = sum(s + 0.5 * math.log(2 * math.pi * math.e) for s in row[3:])
        assert value == pytest.approx(want, rel=1e-5, abs=1e-5)
    for a, b, value in zip(as_lists(p), as_lists(q), dist.kl(p, q).tolist()):
        want = sum(math.log(math.exp(sq) / math.exp(sp))
                   + (math.exp(sp) ** 2 + (mp - mq) ** 2) / (2 * math.exp(sq) ** 2) - 0.5
                   for mp, sp, mq, sq in zip(a[:3], a[3:], b[:3], b[3:]))
        assert value >= 0 and value == pytest.approx(want, rel=1e-4, abs=1e-5)
    assert torch.equal(dist.kl(p, p), torch.zeros(32))


def test_gaussian_kl_agrees_with_a_monte_carlo_estimate() -> None:
    dist = DiagGaussian((2,))
    p = torch.tensor([[0.3, -1.0, -0.5, 0.2]])
    q = torch.tensor([[0.0, 0.5, 0.1, -0.3]])
    samples = dist.sample(p.expand(200_000, 4), torch.Generator().manual_seed(3))
    estimate = (dist.log_prob(p.expand(200_000, 4), samples)
                - dist.log_prob(q.expand(200_000, 4), samples)).mean()
    assert float(estimate) == pytest.approx(float(dist.kl(p, q)), rel=0.02)


def test_gaussian_samples_have_the_parameters_mean_and_std() -> None:
    dist = DiagGaussian((2,))
    params = torch.tensor([1.5, -2.0, math.log(0.5), math.log(2.0)]).expand(100_000, 4)
    draws = dist.sample(params, torch.Generator().manual_seed(4))
    assert draws.shape == (100_000, 2) and draws.dtype == torch.float32
    torch.testing.assert_close(draws.mean(0), torch.tensor([1.5, -2.0]), atol=0.03, rtol=0)
    torch.testing.assert_close(draws.std(0), torch.tensor([0.5, 2.0]), atol=0.03, rtol=0)


def test_multidiscrete_is_a_product_of_categoricals() -> None:
    dist = MultiDiscrete((2, 3), start=(0, -1))
    assert dist.param_size == 5 and dist.action_shape == (2,)
    generator = torch.Generator().manual_seed(5)
    p = torch.randn(16, 5, generator=generator) * 4
    q = torch.randn(16, 5, generator=generator) * 4
    actions = dist.sample(p, generator)
    assert ((actions[:, 0] >= 0) & (actions[:, 0] <= 1)).all()
    assert ((actions[:, 1] >= -1) & (actions[:, 1] <= 1)).all()
    for row, qrow, a, lp, h, k in zip(as_lists(p), as_lists(q), actions.tolist(),
                                      dist.log_prob(p, actions).tolist(),
                                      dist.entropy(p).tolist(), dist.kl(p, q).tolist()):
        want = (reference_log_softmax(row[:2])[a[0]] + reference_log_softmax(row[2:])[a[1] + 1])
        assert lp == pytest.approx(want, rel=1e-5, abs=1e-5)
        assert h == pytest.approx(reference_entropy(row[:2]) + reference_entropy(row[2:]),
                                  rel=1e-5, abs=1e-6)
        assert k == pytest.approx(reference_kl(row[:2], qrow[:2]) + reference_kl(row[2:], qrow[2:]),
                                  rel=1e-4, abs=1e-5)


def test_distribution_is_chosen_from_the_action_space() -> None:
    assert isinstance(action_distribution(gym.spaces.Discrete(4)), Categorical)
    gaussian = action_distribution(gym.spaces.Box(-2, 2, (1,), np.float32))
    assert isinstance(gaussian, DiagGaussian) and gaussian.param_size == 2
    multi = action_distribution(gym.spaces.MultiDiscrete([3, 4]))
    assert isinstance(multi, MultiDiscrete) and multi.param_size == 7
    for space in (gym.spaces.MultiBinary(3), gym.spaces.Box(0, 3, (2,), np.int64),
                  gym.spaces.Discrete(3, start=1)):
        with pytest.raises(ValueError, match="action space"):
            action_distribution(space)


def test_parameter_shapes_are_checked_with_a_message() -> None:
    with pytest.raises(ValueError, match="param_size"):
        Categorical(3).entropy(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="actions has shape"):
        DiagGaussian((2,)).log_prob(torch.zeros(4, 4), torch.zeros(4, 3))
