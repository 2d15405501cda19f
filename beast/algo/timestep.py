"""One time-index convention: a [T+1, B] rollout as the [T, B] inputs of the losses.

Why this exists: a rollout stores, at each entry i, the observation o_i together with the
reward and end flags of the step that LED INTO o_i, and the agent's output AT o_i. The losses
(vtrace.py, losses.py, impact.py, vmpo.py) take one entry per transition instead. The two
meet here and nowhere else, so neither the learner nor a caller of `beast.algo` slices.

Names follow rlax: `_tm1` is the state a transition starts from, `_t` the one it reaches.
Transition t (t = 0 .. T-1) goes from rollout entry t to entry t+1:

    rollout entry i      0            1            2                 T
    obs, action          o_0, a_0 ──► o_1, a_1 ──► o_2, a_2  ...  ──► o_T, (a_T unused)
    reward, terminated   (previous)   r_1, d_1     r_2, d_2           r_T, d_T
    transition           └──── t=0 ───┘└─── t=1 ───┘          └ t=T-1 ┘

    a_tm1[t]           = action[t]                 the action taken at o_t
    r_t[t]             = reward[t+1]               the reward that action earned
    discount_t[t]      = discount * (1 - terminated[t+1])   0 when o_{t+1} is terminal;
                                                   a truncation still bootstraps
    valid[t]           = not (terminated[t] or truncated[t])
    mu_tm1[t]          = policy_params[t]          the behaviour policy at o_t
    version_tm1[t]     = policy_version[t]
    v_tm1[t]           = values[t]                 V(o_t)
    bootstrap_value    = values[T]                 V(o_T), [B]

`valid` is False where o_t ended an episode: with Gymnasium's next-step autoreset the env
ignores the action taken at a final observation and answers with the next episode's first
one, so that transition is a placeholder with no learning signal. Transition t-1 (into the
final observation) stays valid, which is how a truncated episode bootstraps from V(o_t).
Entry T's action and behaviour outputs belong to the next unroll's transition 0 (whose entry
0 repeats this one's entry T), so they are not read here.

    steps = align_rollout(rollout, discount=0.99, values=v)   # v = model's V over [T+1, B]
    log_pi = dist.log_prob(steps.at_tm1(logits), steps.a_tm1) # logits [T+1, B, A] -> [T, B, A]
    vtrace_from_importance_weights(log_pi - log_mu, steps.discount_t, steps.r_t, steps.v_tm1,
                                   steps.bootstrap_value, valid=steps.valid)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch

REQUIRED_KEYS = ("action", "reward", "terminated", "truncated")
"""The rollout keys `align_rollout` always reads; `policy_params` and `policy_version` are
read when present (beast.rollout's names)."""


@dataclasses.dataclass(frozen=True)
class AlignedTransitions:
    """The T transitions of a [T+1, B] rollout, one entry per transition (module docstring).

    All tensors are [T, B, ...] except `bootstrap_value` ([B]). They are views of the rollout
    where slicing is all it takes, so aligning costs no copy of the actions or the behaviour
    outputs.
    """

    a_tm1: torch.Tensor
    """[T, B, *action_shape] the action of each transition."""
    r_t: torch.Tensor
    """[T, B] the reward it earned, as the rollout holds it (unscaled, unclipped)."""
    discount_t: torch.Tensor
    """[T, B] discount * (1 - terminated at its end), in r_t's dtype; not zeroed by truncation."""
    valid: torch.Tensor
    """[T, B] bool: False for the placeholder transition out of an episode's final observation."""
    mu_tm1: torch.Tensor | None = None
    """[T, B, P] the behaviour policy's distribution parameters (rollout["policy_params"])."""
    version_tm1: torch.Tensor | None = None
    """[T, B] int64 policy version that chose each action (rollout["policy_version"])."""
    v_tm1: torch.Tensor | None = None
    """[T, B] V(o_t), when `align_rollout` was given values (keeps their autograd history)."""
    bootstrap_value: torch.Tensor | None = None
    """[B] V(o_T), detached: it is a regression target, never trained through."""

    @property
    def length(self) -> int:
        """T, the number of transitions."""
        return self.r_t.shape[0]

    def at_tm1(self, x: torch.Tensor) -> torch.Tensor:
        """The [T, B, ...] per-transition view of a [T+1, B, ...] per-entry tensor `x` (e.g. the
        learner's policy parameters over the rollout): its rows 0..T-1. Raises if `x` is not
        T+1 long, so a tensor already aligned is not silently cut once more."""
        if x.dim() < 2 or tuple(x.shape[:2]) != (self.length + 1, self.r_t.shape[1]):
            raise ValueError(f"at_tm1 needs [T+1, B, ...] = [{self.length + 1}, "
                             f"{self.r_t.shape[1]}, ...] (one entry per rollout step), got "
                             f"{tuple(x.shape)}")
        return x[:-1]


def align_rollout(rollout: Mapping[str, torch.Tensor], discount: float | torch.Tensor, *,
                  values: torch.Tensor | None = None) -> AlignedTransitions:
    """The transitions of a [T+1, B] rollout as the losses take them (see the module docstring).

    `rollout` maps beast.rollout's keys to tensors (action, reward, terminated, truncated; and
    policy_params, policy_version when present). `discount` is gamma (a float, or a tensor that
    broadcasts against [T, B]). `values` [T+1, B] is the critic's V over the rollout's
    observations. Raises ValueError naming the key whose shape or dtype is wrong.
    """
    missing = [key for key in REQUIRED_KEYS if key not in rollout]
    if missing:
        raise ValueError(f"the rollout lacks {missing} (align_rollout reads {REQUIRED_KEYS})")
    reward = rollout["reward"]
    if reward.dim() != 2 or reward.shape[0] < 2:
        raise ValueError(f"rollout['reward'] has shape {tuple(reward.shape)}, expected [T+1, B] "
                         "with T >= 1")
    leading = tuple(reward.shape)
    for key in ("terminated", "truncated"):
        if tuple(rollout[key].shape) != leading or rollout[key].dtype != torch.bool:
            raise ValueError(f"rollout[{key!r}] is {rollout[key].dtype} {tuple(rollout[key].shape)}"
                             f", expected torch.bool {leading} like rollout['reward']")
    for key in ("action", "policy_params", "policy_version"):
        if key in rollout and tuple(rollout[key].shape[:2]) != leading:
            raise ValueError(f"rollout[{key!r}] has shape {tuple(rollout[key].shape)}, expected "
                             f"[T+1, B, ...] = {leading} like rollout['reward']")
    if values is not None and tuple(values.shape) != leading:
        raise ValueError(f"values has shape {tuple(values.shape)}, expected [T+1, B] = {leading} "
                         "(V of every rollout observation, bootstrap included)")

    terminated, truncated = rollout["terminated"], rollout["truncated"]
    r_t = reward[1:]
    params, version = rollout.get("policy_params"), rollout.get("policy_version")
    return AlignedTransitions(
        a_tm1=rollout["action"][:-1],
        r_t=r_t,
        discount_t=discount * (~terminated[1:]).to(r_t.dtype),
        valid=~(terminated[:-1] | truncated[:-1]),
        mu_tm1=None if params is None else params[:-1],
        version_tm1=None if version is None else version[:-1],
        v_tm1=None if values is None else values[:-1],
        bootstrap_value=None if values is None else values[-1].detach(),
    )
