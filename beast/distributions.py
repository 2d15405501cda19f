"""Action distributions, chosen from the action space: everything that knows what the policy's
parameters mean lives here.

A model's policy head outputs a flat parameter vector per step (`policy_params`, size
`param_size`); the rollout stores it as the behaviour policy; V-trace ratios, entropy, the
learner's KL(mu || pi) diagnostics, APS drift and action sampling in actors, PolyBeast's
inference and `--eval` all read it through one of these classes:

    dist = action_distribution(env.single_action_space)
    params = model(obs).policy_params              # [..., dist.param_size]
    action = dist.sample(params, generator)        # [..., *dist.action_shape], dist.action_dtype
    logp = dist.log_prob(params, action)           # [...]
    h = dist.entropy(params)                       # [...]
    d = dist.kl(behaviour_params, learner_params)  # [...] KL(p || q), >= 0

- `Categorical(n)` for Discrete: params are logits.
- `DiagGaussian(shape)` for Box: params are the mean and the log standard deviation (the model
  makes the mean state-dependent and the log-std a learned state-independent vector).
  **Bounds.** The sample is unbounded; the env adapter clips it into the Box (Gymnasium's
  ClipAction, applied in `beast.envs.make` for every runtime) and the rollout keeps the
  unclipped sample, whose log-prob is the exact density the loss needs. We chose clipping over
  a tanh squash because the clipped Gaussian keeps a closed-form entropy and KL (the squashed
  one has neither), the log-prob needs no Jacobian correction that blows up near the bounds, and
  it is what PPO/IMPALA baselines on MuJoCo-style tasks do.
- `MultiDiscrete(nvec)`: a product of independent categoricals (params: their logits, joined).

All computations run in at least float32 and are exact for any finite parameters: entries
with probability 0 (a logit far below the others, or -inf for a masked action) contribute 0
to entropy and KL instead of 0 * -inf, and a KL is never negative through rounding.
"""

from __future__ import annotations

import math
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn


def _f32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def _check_params(name: str, params: torch.Tensor, size: int) -> None:
    if params.dim() < 1 or params.shape[-1] != size:
        raise ValueError(f"{name} has shape {tuple(params.shape)}, expected [..., {size}] "
                         "(the distribution's param_size last)")


class ActionDistribution(Protocol):
    """What the learner, actors and sync controller need from a policy's distribution."""

    param_size: int
    action_shape: tuple[int, ...]
    action_dtype: np.dtype

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor: ...

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        """The most likely action (a greedy policy, e.g. for evaluation)."""
        ...

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...

    def entropy(self, params: torch.Tensor) -> torch.Tensor: ...

    def kl(self, p_params: torch.Tensor, q_params: torch.Tensor) -> torch.Tensor: ...


def categorical_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """log_softmax over the last axis in at least float32 (half precision loses the digits of
    unlikely actions, and importance ratios exponentiate that error)."""
    return torch.log_softmax(_f32(logits), dim=-1)


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = -sum_a p log p per position, with p log p = 0 where p = 0."""
    log_p = categorical_log_probs(logits)
    p = log_p.exp()
    return -torch.where(p > 0, p * log_p, 0.0).sum(-1)


def categorical_kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_a p (log p - log q) per position, clamped at 0 (rounding can make a
    near-zero sum of mixed-sign terms dip below). Exactly 0 for identical logits."""
    if tuple(q_logits.shape) != tuple(p_logits.shape):
        raise ValueError(f"q_logits has shape {tuple(q_logits.shape)}, expected "
                         f"{tuple(p_logits.shape)} (like p_logits)")
    log_p = categorical_log_probs(p_logits)
    log_q = categorical_log_probs(q_logits)
    p = log_p.exp()
    terms = torch.where(p > 0, p * (log_p - log_q), 0.0)
    return terms.sum(-1).clamp(min=0.0)


def categorical_sample(logits: torch.Tensor, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
    """Sample from softmax(logits) by the Gumbel-max trick (one fused pass, no normalising)."""
    noise = torch.empty_like(logits, dtype=_f32(logits).dtype).exponential_(generator=generator)
    return (_f32(logits) - noise.log_()).argmax(dim=-1)


class Categorical:
    """A Discrete(n) policy; params are n logits."""

    action_dtype = np.dtype(np.int64)
    action_shape: tuple[int, ...] = ()

    def __init__(self, num_actions: int) -> None:
        if num_actions < 1:
            raise ValueError(f"a categorical needs at least one action (got {num_actions})")
        self.num_actions = self.param_size = int(num_actions)

    def __repr__(self) -> str:
        return f"Categorical({self.num_actions})"

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        return categorical_sample(params, generator)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        _check_params("params", params, self.param_size)
        return params.argmax(dim=-1)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        _check_params("params", params, self.param_size)
        if tuple(actions.shape) != tuple(params.shape[:-1]):
            raise ValueError(f"actions has shape {tuple(actions.shape)}, expected "
                             f"{tuple(params.shape[:-1])} (the leading shape of the params)")
        if actions.dtype.is_floating_point or actions.dtype == torch.bool:
            raise ValueError(f"actions must be an integer tensor (got {actions.dtype})")
        log_p = categorical_log_probs(params)
        return log_p.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        _check_params("params", params, self.param_size)
        return categorical_entropy(params)

    def kl(self, p_params: torch.Tensor, q_params: torch.Tensor) -> torch.Tensor:
        _check_params("p_params", p_params, self.param_size)
        return categorical_kl(p_params, q_params)


class MultiDiscrete:
    """Independent categoricals, one per entry of `nvec`; params are their logits, joined.
    Actions are int64 [len(nvec)], each entry in start[i] .. start[i] + nvec[i] - 1."""

    action_dtype = np.dtype(np.int64)

    def __init__(self, nvec: tuple[int, ...], start: tuple[int, ...] | None = None) -> None:
        self.nvec = tuple(int(n) for n in nvec)
        if not self.nvec or min(self.nvec) < 1:
            raise ValueError(f"MultiDiscrete needs sizes >= 1 (got {self.nvec})")
        self.start = tuple(int(s) for s in start) if start is not None else (0,) * len(self.nvec)
        self.param_size = sum(self.nvec)
        self.action_shape = (len(self.nvec),)

    def __repr__(self) -> str:
        return f"MultiDiscrete({list(self.nvec)})"

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        _check_params("params", params, self.param_size)
        return torch.split(params, self.nvec, dim=-1)

    def _offsets(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor(self.start, dtype=torch.int64, device=like.device)

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        parts = [categorical_sample(logits, generator) for logits in self._split(params)]
        return torch.stack(parts, dim=-1) + self._offsets(params)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        parts = [logits.argmax(dim=-1) for logits in self._split(params)]
        return torch.stack(parts, dim=-1) + self._offsets(params)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        if tuple(actions.shape) != tuple(params.shape[:-1]) + self.action_shape:
            raise ValueError(f"actions has shape {tuple(actions.shape)}, expected "
                             f"{tuple(params.shape[:-1]) + self.action_shape}")
        index = actions.long() - self._offsets(actions)
        return sum(categorical_log_probs(logits).gather(-1, index[..., i:i + 1]).squeeze(-1)
                   for i, logits in enumerate(self._split(params)))

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        return sum(categorical_entropy(logits) for logits in self._split(params))

    def kl(self, p_params: torch.Tensor, q_params: torch.Tensor) -> torch.Tensor:
        return sum(categorical_kl(p, q) for p, q in zip(self._split(p_params),
                                                        self._split(q_params)))


_LOG_2PI = math.log(2 * math.pi)


class DiagGaussian:
    """A Box policy: independent normals per action entry; params are [mean, log_std] (each
    of size prod(shape)). Samples are unbounded: see the module docstring for the bounds."""

    action_dtype = np.dtype(np.float32)

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.action_shape = tuple(int(d) for d in shape)
        self.size = math.prod(self.action_shape)
        if self.size < 1:
            raise ValueError(f"a Gaussian policy needs at least one action entry (got {shape})")
        self.param_size = 2 * self.size

    def __repr__(self) -> str:
        return f"DiagGaussian({self.action_shape})"

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_params("params", params, self.param_size)
        mean, log_std = _f32(params).split(self.size, dim=-1)
        return mean, log_std

    def _flat(self, actions: torch.Tensor, lead: tuple[int, ...]) -> torch.Tensor:
        if tuple(actions.shape) != lead + self.action_shape:
            raise ValueError(f"actions has shape {tuple(actions.shape)}, expected "
                             f"{lead + self.action_shape}")
        return actions.reshape(*lead, self.size).float()

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        mean, log_std = self._split(params)
        noise = torch.empty_like(mean).normal_(generator=generator)
        return (mean + log_std.exp() * noise).reshape(*mean.shape[:-1], *self.action_shape)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        mean, _ = self._split(params)
        return mean.reshape(*mean.shape[:-1], *self.action_shape)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(params)
        z = (self._flat(actions, tuple(mean.shape[:-1])) - mean) * torch.exp(-log_std)
        return (-0.5 * z.square() - log_std).sum(-1) - 0.5 * self.size * _LOG_2PI

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        _, log_std = self._split(params)
        return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)

    def kl(self, p_params: torch.Tensor, q_params: torch.Tensor) -> torch.Tensor:
        """Closed form: sum_i log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2."""
        if tuple(q_params.shape) != tuple(p_params.shape):
            raise ValueError(f"q_params has shape {tuple(q_params.shape)}, expected "
                             f"{tuple(p_params.shape)} (like p_params)")
        mean_p, log_std_p = self._split(p_params)
        mean_q, log_std_q = self._split(q_params)
        ratio = torch.exp(2.0 * (log_std_p - log_std_q))  # s_p^2 / s_q^2
        gap = (mean_p - mean_q).square() * torch.exp(-2.0 * log_std_q)
        terms = (log_std_q - log_std_p) + 0.5 * (ratio + gap - 1.0)
        return terms.sum(-1).clamp(min=0.0)


def action_distribution(space: gym.Space) -> Categorical | DiagGaussian | MultiDiscrete:
    """The distribution for an action space; ValueError (one line) for one Beast cannot act in."""
    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise ValueError(f"Discrete action spaces must start at 0 (got {space})")
        return Categorical(int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise ValueError(f"MultiDiscrete action spaces must be flat (got nvec of shape "
                             f"{space.nvec.shape})")
        return MultiDiscrete(tuple(space.nvec.tolist()), tuple(np.asarray(space.start).tolist()))
    if isinstance(space, gym.spaces.Box):
        if not np.issubdtype(space.dtype, np.floating):
            raise ValueError(f"Box action spaces must be floating point (got {space})")
        return DiagGaussian(tuple(space.shape))
    raise ValueError(f"unsupported action space {space}: Beast acts in Discrete, "
                     "MultiDiscrete and Box spaces")


def action_feature_size(dist: ActionDistribution) -> int:
    """The width of `action_features` for `dist`'s actions."""
    if isinstance(dist, Categorical):
        return dist.num_actions
    if isinstance(dist, MultiDiscrete):
        return sum(dist.nvec)
    if isinstance(dist, DiagGaussian):
        return dist.size
    raise ValueError(f"{dist!r} has no action features (a core input needs them)")


def action_features(dist: ActionDistribution, actions: torch.Tensor) -> torch.Tensor:
    """Actions [*lead, *action_shape] as float32 features [*lead, action_feature_size(dist)]:
    one-hot for Categorical, one-hot per entry joined for MultiDiscrete, the flattened action
    for DiagGaussian. What a recurrent core is fed as its "last action" input."""
    if isinstance(dist, Categorical):
        return nn.functional.one_hot(actions.long(), dist.num_actions).float()
    if isinstance(dist, MultiDiscrete):
        index = actions.long() - dist._offsets(actions)
        return torch.cat([nn.functional.one_hot(index[..., i], n).float()
                          for i, n in enumerate(dist.nvec)], dim=-1)
    if isinstance(dist, DiagGaussian):
        return actions.reshape(*actions.shape[: actions.dim() - len(dist.action_shape)],
                               dist.size).float()
    raise ValueError(f"{dist!r} has no action features (a core input needs them)")
