"""Beast: scalable actor-learner reinforcement learning in PyTorch.

The core (this package) holds no processes and no sockets: losses, models, the learner,
environment adapters, rollout layout, config, logging and checkpoints. The runtimes live in
`beast.mono` (single machine, pure Python) and `beast.poly` (C++ core).
"""

from beast.config import Config, ConfigError, EnvConfig, LossConfig, ModelConfig, OptimConfig, RunConfig
from beast.learner import Learner
from beast.models import AgentOutput, PolicyValueMLP, build_model
from beast.rollout import RolloutSpec

__all__ = [
    "AgentOutput",
    "Config",
    "ConfigError",
    "EnvConfig",
    "Learner",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PolicyValueMLP",
    "RolloutSpec",
    "RunConfig",
    "build_model",
]
