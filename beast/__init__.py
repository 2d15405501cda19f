"""Beast: scalable actor-learner reinforcement learning in PyTorch.

The core (this package) holds no sockets, and one process only, the optional periodic
evaluator that the shared training driver starts (beast.evaluator, --eval-every): losses and
objectives, action distributions, models, the learner, acting, environment adapters, the
rollout schema, weight sync, config, logging and checkpoints. The runtimes live in
`beast.mono` (single machine, pure Python) and `beast.poly` (C++ core).

Public names are imported on first use, so `import beast.config` or `python -m beast.plot`
do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "AgentOutput": "beast.models",
    "AlignedTransitions": "beast.algo",
    "Batch": "beast.rollout",
    "BatchError": "beast.batch_contract",
    "Categorical": "beast.distributions",
    "DiagGaussian": "beast.distributions",
    "EpisodeCounter": "beast.rollout",
    "EvalConfig": "beast.config",
    "ImpactConfig": "beast.config",
    "ImpactObjective": "beast.objectives",
    "ImpalaObjective": "beast.objectives",
    "MonoConfig": "beast.config",
    "MultiDiscrete": "beast.distributions",
    "NonFiniteError": "beast.learner",
    "StepResult": "beast.learner",
    "SyncDriver": "beast.sync",
    "UnrollWorker": "beast.acting",
    "VmpoConfig": "beast.config",
    "VmpoObjective": "beast.objectives",
    "action_distribution": "beast.distributions",
    "align_rollout": "beast.algo",
    "build_objective": "beast.objectives",
    "policy_step": "beast.acting",
    "Config": "beast.config",
    "ConfigError": "beast.config",
    "EnvConfig": "beast.config",
    "Learner": "beast.learner",
    "LossConfig": "beast.config",
    "ModelConfig": "beast.config",
    "OptimConfig": "beast.config",
    "PolicyValueMLP": "beast.models",
    "PolicyValueNet": "beast.models",
    "ReuseBuffer": "beast.replay",
    "RolloutSpec": "beast.rollout",
    "RunConfig": "beast.config",
    "build_model": "beast.models",
    "make_vector_env": "beast.envs",
    # what the examples use besides: the loss terms, the APS controller, the learner's keys
    "APSController": "beast.sync",
    "baseline_loss": "beast.algo",
    "entropy_loss": "beast.algo",
    "learner_fields": "beast.batch_contract",
    "policy_gradient_loss": "beast.algo",
    "vtrace_from_importance_weights": "beast.algo",
    "RemoteVectorEnv": "beast.poly.remote_env",
}

__all__ = sorted(_PUBLIC)


def _register_envs() -> None:
    """Register Beast's own Gymnasium ids. The entry point is a string, so registering imports
    only Gymnasium (not torch, not the env); re-running it (a reload) registers nothing twice."""
    import gymnasium as gym

    if "ZipfGridworld-v0" not in gym.registry:
        gym.register("ZipfGridworld-v0", entry_point="beast.envs.zipf_gridworld:ZipfGridworld")


_register_envs()


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'beast' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
