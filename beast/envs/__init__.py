"""Environment adapters: Gymnasium ids to vector envs with Beast's conventions."""

from beast.envs.make import (
    MissingExtraError,
    UnknownEnvError,
    make_env,
    make_vector_env,
    make_vector_env_from_config,
    resolve_env_id,
)

__all__ = ["MissingExtraError", "UnknownEnvError", "make_env", "make_vector_env",
           "make_vector_env_from_config", "resolve_env_id"]
