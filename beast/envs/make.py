"""Environment ids → vector environments with Beast's step semantics.

Every runtime steps environments through a `gymnasium.vector.VectorEnv` in next-step autoreset
mode: the step after a terminal or truncated observation returns the first observation of the
next episode with reward 0 and the action ignored. Keeping that (rather than same-step reset)
keeps the final observation of a truncated episode in the rollout, so the learner can bootstrap
from its value exactly; the learner masks the placeholder transition out of the loss.

Ids and backends:
- backend "gymnasium": any registered Gymnasium id (`module:Id` imports `module` first);
  Atari ids `ALE/Pong-v5` (or `Pong-v5`) through ale-py with the standard preprocessing
  (beast/envs/atari.py); `MinAtar/Breakout-v1` etc. with channels-first obs (beast/envs/minatar.py).
- backend "envpool": envpool's C++ pools (beast/envs/envpool.py); `ALE/Pong-v5` maps to envpool's
  `Pong-v5` with the same preprocessing, other ids are envpool task ids.
The Atari, MinAtar and envpool adapters serve images as [C, H, W] (the image torsos expect
that; a plain Gymnasium id is served as it is). The optional packages are imported only for ids that
need them; a missing one raises MissingExtraError saying what to install.
"""

from __future__ import annotations

import difflib
import functools
import importlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from beast.config import EnvConfig
from beast.envs import atari, minatar
from beast.envs import envpool as envpool_backend
from beast.envs.single import SingleEnvVector
from beast.envs.spaces import adapt_spaces, needs_adapting

BACKENDS = ("gymnasium", "envpool")
INSTALL_COMMANDS = {
    "atari": 'pip install -e ".[atari]"',
    "minatar": "pip install --no-deps minatar",
    "envpool": 'pip install -e ".[envpool]"',
    "box2d": 'pip install -e ".[box2d]"',
    "mujoco": 'pip install -e ".[mujoco]"',
}
_T = TypeVar("_T")


class UnknownEnvError(ValueError):
    """The environment id cannot be made here: unknown id, or its optional package is missing."""


class MissingExtraError(UnknownEnvError):
    """The id needs an optional package (an extra of the beast package) that is not installed."""


def _with_extra(load: Callable[[], _T], extra: str, env_id: str) -> _T:
    """Run `load`; an ImportError becomes a one-line MissingExtraError with the install command."""
    try:
        return load()
    except ImportError as exc:
        missing = exc.name or "an optional package"
        raise MissingExtraError(f"environment {env_id!r} needs {missing!r}, which is not "
                                f"installed; install it with `{INSTALL_COMMANDS[extra]}`") from exc


def _gym_make(env_id: str, name: str, env_kwargs: Mapping[str, Any] | None = None) -> gym.Env:
    """gym.make, with a missing dependency as one line naming the install command (the box2d
    envs' extra is Beast's `[box2d]`, the MuJoCo envs' `[mujoco]`)."""
    try:
        return gym.make(name, **(env_kwargs or {}))
    except (ImportError, gym.error.DependencyNotInstalled) as exc:
        # Gymnasium reports box2d as DependencyNotInstalled; its MuJoCo envs may fail on a
        # plain import (mujoco, imageio) first.
        entry_point = str(gym.spec(name).entry_point)
        extra = next((e for e in ("box2d", "mujoco") if e in entry_point), None)
        if extra is not None:
            raise MissingExtraError(f"environment {env_id!r} needs {extra}, which is not "
                                    f"installed; install it with `{INSTALL_COMMANDS[extra]}`"
                                    ) from exc
        if isinstance(exc, ImportError):
            raise
        raise MissingExtraError(f"environment {env_id!r} needs a package that is not installed: "
                                f"{' '.join(str(exc).split())}") from exc


def _check_env_kwargs(env_id: str, factory: Callable[..., gym.Env] | None,
                      env_kwargs: Mapping[str, Any] | None) -> None:
    """Env kwargs go to `gym.make` of a plain Gymnasium id; Beast's Atari and MinAtar builders
    (a `factory`) take none."""
    if factory is not None and env_kwargs:
        raise ValueError(f"env kwargs apply to plain Gymnasium ids only, not {env_id}")


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown env backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _unknown(env_id: str, name: str, known: list[str], list_command: str) -> UnknownEnvError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UnknownEnvError(
        f"unknown environment id {env_id!r}.{hint} List valid ids with `{list_command}`.")


def import_namespace(env_id: str) -> str:
    """Gymnasium's `module:EnvId` form imports `module` (which registers ids); return the id."""
    if ":" not in env_id:
        return env_id
    module, _, name = env_id.partition(":")
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise UnknownEnvError(f"cannot import {module!r} for env id {env_id!r}: {exc}") from exc
    return name


def _registered_name(env_id: str, name: str) -> str | None:
    """The Gymnasium id for `name`, registering MinAtar / Atari ids when the name asks for them."""
    if name in gym.registry:
        return name
    if name.startswith(minatar.MINATAR_PREFIX):
        _with_extra(minatar.register_minatar, "minatar", env_id)
    elif name.startswith(envpool_backend.ALE_PREFIX):
        _with_extra(atari.register_atari, "atari", env_id)
    elif not atari.try_register_atari():  # maybe an Atari id without its namespace: `Pong-v5`
        return None
    for candidate in (name, envpool_backend.ALE_PREFIX + name):
        if candidate in gym.registry:
            return candidate
    return None


def _envpool_task(env_id: str) -> str:
    task = envpool_backend.task_id_for(env_id)
    tasks = _with_extra(envpool_backend.list_tasks, "envpool", env_id)
    if task not in tasks:
        raise _unknown(env_id, task, tasks, "python -m beast.envs --backend envpool")
    return task


def resolve_env_id(env_id: str, *, backend: str = "gymnasium") -> str:
    """The id `backend` knows `env_id` by (a Gymnasium id, or an envpool task id).

    Raises UnknownEnvError (with close matches and how to list ids) for an unknown id, and its
    subclass MissingExtraError when the id needs an optional package that is not installed.
    """
    _check_backend(backend)
    if backend == "envpool":
        return _envpool_task(env_id)
    name = import_namespace(env_id)
    registered = _registered_name(env_id, name)
    if registered is None:
        raise _unknown(env_id, name, list(gym.registry), "python -m beast.envs")
    return registered


def _check_flags(env_id: str, is_atari: bool, episodic_life: bool, sticky_actions: bool) -> None:
    if not is_atari and (episodic_life or sticky_actions):
        raise ValueError(f"--episodic-life and --sticky-actions apply to Atari ids only, not {env_id}")


def _env_factory(name: str, episodic_life: bool, sticky_actions: bool
                 ) -> Callable[[], gym.Env] | None:
    """A builder of one env for an Atari or MinAtar id; None for a plain Gymnasium id."""
    is_atari = atari.is_atari(name)
    _check_flags(name, is_atari, episodic_life, sticky_actions)
    if is_atari:
        return functools.partial(atari.make_atari, name, episodic_life=episodic_life,
                                 sticky_actions=sticky_actions)
    if name.startswith(minatar.MINATAR_PREFIX):
        return functools.partial(minatar.make_minatar, name)
    return None


def _make_envpool(env_id: str, num_envs: int, episodic_life: bool, sticky_actions: bool
                  ) -> envpool_backend.EnvPoolVectorEnv:
    task = _envpool_task(env_id)
    is_atari = envpool_backend.is_atari_task(task)
    _check_flags(env_id, is_atari, episodic_life, sticky_actions)
    options = (envpool_backend.atari_options(episodic_life=episodic_life,
                                             sticky_actions=sticky_actions) if is_atari else {})
    channels_last = task.startswith(envpool_backend.CHANNELS_LAST_PREFIXES)
    return envpool_backend.EnvPoolVectorEnv(task, num_envs, options, report_game_over=episodic_life,
                                            channels_last=channels_last)


def make_vector_env(env_id: str, num_envs: int, *, backend: str = "gymnasium",
                    episodic_life: bool = False, sticky_actions: bool = False,
                    per_env: bool = False, env_kwargs: Mapping[str, Any] | None = None
                    ) -> gym.vector.VectorEnv:
    """`num_envs` copies of `env_id` as one next-step autoreset vector env.

    Seed it with `env.reset(seed=s)`: environment i then gets seed s + i. A single env with
    array observations comes as a SingleEnvVector, the cheapest wrapper with the same semantics.
    Plain Gymnasium ids use their native vectorised env if they have one, unless `per_env`:
    then every env is its own `gym.make` env with its own RNG, so the K envs step exactly as K
    envs of a SyncVectorEnv seeded the same way, and their infos are kept as SyncVectorEnv
    batches them. A native vector env does not promise that (CartPole's draws every env's
    start from one RNG), so env servers, whose envs RemoteVectorEnv splits across
    connections, ask for `per_env`; MonoBeast keeps the native fast path.

    `env_kwargs` go to `gym.make` (plain Gymnasium ids only; ValueError otherwise).
    `episodic_life` and `sticky_actions` apply to Atari ids only (ValueError otherwise). With
    `episodic_life`, a lost life ends the learning episode and every info carries `game_over`.
    """
    _check_backend(backend)
    if env_kwargs and backend == "envpool":
        raise ValueError(f"env kwargs apply to Gymnasium ids only, not envpool's {env_id}")
    if backend == "envpool":
        return _make_envpool(env_id, num_envs, episodic_life, sticky_actions)
    name = resolve_env_id(env_id)
    factory = _env_factory(name, episodic_life, sticky_actions)
    _check_env_kwargs(env_id, factory, env_kwargs)
    if factory is None:
        env = _gym_make(env_id, name, env_kwargs)  # one env first: its spaces decide the vector env
        if needs_adapting(env.observation_space, env.action_space):
            adapted = adapt_spaces(env)  # structured observations, Box actions (beast.envs.spaces)
            if num_envs == 1:
                return SingleEnvVector(adapted, keep_info=per_env)
            adapted.close()
            factory = lambda: adapt_spaces(_gym_make(env_id, name, env_kwargs))  # noqa: E731
        elif num_envs == 1:
            return SingleEnvVector(env, keep_info=per_env)
        elif per_env:
            env.close()
            factory = functools.partial(_gym_make, env_id, name, env_kwargs)
        else:
            env.close()
            return _gym_vector_env(env_id, name, num_envs, env_kwargs)
    if num_envs == 1:
        return SingleEnvVector(factory(), keep_info=per_env)
    return gym.vector.SyncVectorEnv([factory] * num_envs, autoreset_mode=AutoresetMode.NEXT_STEP)


def _gym_vector_env(env_id: str, name: str, num_envs: int,
                    env_kwargs: Mapping[str, Any] | None = None) -> gym.vector.VectorEnv:
    """A plain Gymnasium id's own vector env (its vectorised implementation if it has one)."""
    spec = gym.spec(name)
    mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    env = gym.make_vec(name, num_envs=num_envs, vectorization_mode=mode, **(env_kwargs or {}))
    autoreset = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if autoreset != AutoresetMode.NEXT_STEP:
        env.close()
        raise ValueError(f"{env_id}: Beast needs next-step autoreset vector envs, got {autoreset}")
    return env


def make_env(env_id: str, *, episodic_life: bool = False, sticky_actions: bool = False,
             env_kwargs: Mapping[str, Any] | None = None, render_mode: str | None = None
             ) -> gym.Env:
    """One environment, preprocessed exactly as in `make_vector_env` (e.g. for its spaces);
    `render_mode` (e.g. "rgb_array" for videos) goes to the underlying `gym.make`."""
    name = resolve_env_id(env_id)
    factory = _env_factory(name, episodic_life, sticky_actions)
    _check_env_kwargs(env_id, factory, env_kwargs)
    if factory is not None:
        return factory(render_mode=render_mode) if render_mode else factory()
    kwargs = {**(env_kwargs or {}), **({"render_mode": render_mode} if render_mode else {})}
    env = _gym_make(env_id, name, kwargs)
    return adapt_spaces(env) if needs_adapting(env.observation_space, env.action_space) else env


def check_env_config(config: EnvConfig) -> None:
    """Fail before any process starts: an unknown id, a missing extra, or Atari-only flags on
    another env raise UnknownEnvError / ValueError with a one-line reason."""
    name = resolve_env_id(config.env, backend=config.env_backend)
    is_atari = (envpool_backend.is_atari_task(name) if config.env_backend == "envpool"
                else atari.is_atari(name))
    _check_flags(config.env, is_atari, config.episodic_life, config.sticky_actions)


def make_vector_env_from_config(config: EnvConfig, num_envs: int | None = None,
                                *, episodic_life: bool | None = None, per_env: bool = False,
                                env_kwargs: Mapping[str, Any] | None = None
                                ) -> gym.vector.VectorEnv:
    """`make_vector_env` with a run's env settings (`num_envs` and `episodic_life` override
    them: evaluation plays whole games whatever the training episodes were)."""
    return make_vector_env(
        config.env, config.num_envs if num_envs is None else num_envs,
        backend=config.env_backend, sticky_actions=config.sticky_actions,
        episodic_life=config.episodic_life if episodic_life is None else episodic_life,
        per_env=per_env, env_kwargs=env_kwargs)
