"""The loss groups of the run configuration (re-exported by beast.config): what every loss
shares (`LossConfig`, with `--loss` choosing the objective) and one group per loss that has
options of its own (`ImpactConfig`, `VmpoConfig`). A group whose loss is not chosen is parsed,
validated and saved with the run, and has no effect on training.
"""

from __future__ import annotations

import dataclasses

from beast._validate import _check, document_fields

LOSSES = ("impala", "impact", "vmpo")


@document_fields
@dataclasses.dataclass
class LossConfig:
    """What every loss shares, with `loss` choosing the objective (beast.objectives)."""

    loss: str = "impala"
    """What the learner minimises (beast.objectives): impala (V-trace actor-critic), impact
    (V-trace under a target network and a clipped surrogate; --impact-*, --reuse-*) or vmpo
    (V-MPO: top-half advantage weighting with learned duals; --vmpo-*). The flags of a loss
    not chosen are accepted (their values still checked) and have no effect."""

    discount: float = 0.99
    """Discount factor gamma; terminations zero it, truncations do not."""

    baseline_cost: float = 0.5
    """Weight c_v of the value loss (impala, impact; V-MPO's value loss has weight 1)."""

    entropy_cost: float = 0.01
    """Weight c_e of the entropy bonus (impala, impact; V-MPO has none)."""

    clip_rho: float = 1.0
    """V-trace rho-bar: truncation of the importance weight in the value targets (impala,
    impact)."""

    clip_pg_rho: float = 5.0
    """V-trace rho-bar for the policy-gradient advantage (impala, impact). 5, not the paper's
    1: truncating the ~half of ratios just above 1 biases the gradient away from the behaviour
    policy whenever the value overestimates (beast.algo.losses). It makes long CartPole runs
    collapse less often; the optimiser's large epsilon (beast.config.OptimConfig) does the
    rest (bench/long_cartpole.py)."""

    clip_c: float = 1.0
    """V-trace c-bar: truncation of the trace-cutting coefficients (impala, impact)."""

    vtrace_lambda: float = 1.0
    """V-trace lambda (1 = the paper's estimator; lower mixes in shorter returns; impala,
    impact)."""

    reward_scale: float = 1.0
    """Multiply rewards by this in the learner, before --reward-clip (e.g. 0.1 for Pendulum's
    [-16, 0] rewards keeps value targets near 1); reported returns stay the env's."""

    reward_clip: str = "none"
    """Rewards as the learner sees them: none, abs_one (clamp to [-1, 1]; the usual Atari
    setting) or soft (5*tanh(r/5)). Reported episode returns stay the true game returns."""

    reduction: str = "mean"
    """How loss terms reduce over time and batch: mean (default; the scale is independent of
    T and B so learning rates transfer) or sum (TorchBeast's scale). impala and impact; V-MPO
    always takes means."""

    def __post_init__(self) -> None:
        _check(self.loss in LOSSES,
               f"--loss must be {', '.join(LOSSES[:-1])} or {LOSSES[-1]} (got {self.loss!r})")
        _check(0.0 <= self.discount <= 1.0, f"--discount must be in [0, 1] (got {self.discount})")
        for name in ("baseline_cost", "entropy_cost"):
            _check(getattr(self, name) >= 0, f"--{name.replace('_', '-')} must be >= 0")
        for name in ("clip_rho", "clip_pg_rho", "clip_c"):
            _check(getattr(self, name) > 0, f"--{name.replace('_', '-')} must be > 0")
        _check(0.0 <= self.vtrace_lambda <= 1.0, "--vtrace-lambda must be in [0, 1]")
        _check(self.reduction in ("mean", "sum"), "--reduction must be mean or sum")
        _check(self.reward_scale > 0, "--reward-scale must be > 0")
        _check(self.reward_clip in ("none", "abs_one", "soft"),
               f"--reward-clip must be none, abs_one or soft (got {self.reward_clip!r})")


@document_fields
@dataclasses.dataclass
class ImpactConfig:
    """IMPACT (--loss impact; ignored otherwise): beast.algo.impact, beast.objectives.impact."""

    impact_clip_epsilon: float = 0.4
    """PPO-style clip eps of the surrogate ratio r_t to [1 - eps, 1 + eps]."""

    impact_clip_is: float = 2.0
    """rho-bar_tw: truncation of mu / pi_target in the surrogate ratio r_t."""

    impact_target_period: int | None = None
    """Learner steps between hard copies of the online net into the target net; default
    2 x --reuse-buffer-size x --reuse-max-uses (2 N K batches)."""

    impact_kl_coef: float = 0.0
    """Initial coefficient of the KL(pi_target || pi) penalty, adapted every step towards
    --impact-kl-target (doubled above 1.5 x target, halved below target / 1.5, kept within
    [1e-6, 1e6]); 0 turns the penalty off."""

    impact_kl_target: float = 0.01
    """The mean KL per state the adaptive penalty aims at."""

    reuse_buffer_size: int = 4
    """N: batches held in IMPACT's circular reuse buffer (16 for continuous
    control); beast.replay.ReuseBuffer."""

    reuse_max_uses: int = 2
    """K: learner steps each batch may be used for before eviction (continuous: 20)."""

    @property
    def target_period(self) -> int:
        """Learner steps between target-network copies (the one place the default is derived)."""
        return self.impact_target_period or 2 * self.reuse_buffer_size * self.reuse_max_uses

    def __post_init__(self) -> None:
        _check(self.impact_clip_epsilon > 0,
               f"--impact-clip-epsilon must be > 0 (got {self.impact_clip_epsilon})")
        _check(self.impact_clip_is > 0, f"--impact-clip-is must be > 0 (got {self.impact_clip_is})")
        _check(self.impact_target_period is None or self.impact_target_period >= 1,
               f"--impact-target-period must be >= 1 (got {self.impact_target_period})")
        _check(self.impact_kl_coef >= 0,
               f"--impact-kl-coef must be >= 0 (0 = no penalty; got {self.impact_kl_coef})")
        _check(self.impact_kl_target > 0,
               f"--impact-kl-target must be > 0 (got {self.impact_kl_target})")
        _check(self.reuse_buffer_size >= 1,
               f"--reuse-buffer-size must be >= 1 (got {self.reuse_buffer_size})")
        _check(self.reuse_max_uses >= 1,
               f"--reuse-max-uses must be >= 1 (got {self.reuse_max_uses})")


@document_fields
@dataclasses.dataclass
class VmpoConfig:
    """V-MPO (--loss vmpo; ignored otherwise): beast.algo.vmpo, beast.objectives.vmpo."""

    vmpo_target_period: int = 100
    """T_target: learner steps between hard copies of the online net into pi_old."""

    vmpo_eta_init: float = 1.0
    """Initial temperature eta (a learned dual, kept positive by a softplus)."""

    vmpo_alpha_init: float = 5.0
    """Initial KL multiplier alpha for discrete actions (a learned dual, kept positive)."""

    vmpo_alpha_mu_init: float = 1.0
    """Initial alpha_mu, the multiplier of a Gaussian's mean KL."""

    vmpo_alpha_sigma_init: float = 1.0
    """Initial alpha_Sigma, the multiplier of a Gaussian's covariance KL."""

    vmpo_epsilon_eta: float = 0.01
    """eps_eta: the KL bound that sets the temperature."""

    vmpo_epsilon_alpha: float = 0.01
    """eps_alpha: bound on KL(pi_old || pi) per state (for a Gaussian, on its mean part)."""

    vmpo_epsilon_alpha_sigma: float = 1e-5
    """eps_alpha_Sigma: bound on a Gaussian's covariance KL per state."""

    def __post_init__(self) -> None:
        _check(self.vmpo_target_period >= 1,
               f"--vmpo-target-period must be >= 1 (got {self.vmpo_target_period})")
        for name in ("eta_init", "alpha_init", "alpha_mu_init", "alpha_sigma_init",
                     "epsilon_eta", "epsilon_alpha", "epsilon_alpha_sigma"):
            value = getattr(self, "vmpo_" + name)
            _check(value > 0, f"--vmpo-{name.replace('_', '-')} must be > 0 (got {value})")
