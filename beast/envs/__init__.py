"""Environment adapters: Gymnasium ids to vector envs with Beast's conventions."""

from beast.envs.make import UnknownEnvError, make_env, make_vector_env, resolve_env_id

__all__ = ["UnknownEnvError", "make_env", "make_vector_env", "resolve_env_id"]
