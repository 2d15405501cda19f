"""An env server process: Gymnasium vector envs hosted inside the C++ EnvServer.

The C++ server (csrc/net/env_server.h) owns the listening socket and one thread per client
connection doing all socket I/O and decoding without the GIL. For each new connection it calls
`VectorEnvSession(env_config)` here, and then that session's `reset` / `step` (with the
GIL, for just that call). Each connection gets its own K envs, stepped as one batch in next-step
autoreset mode (beast.envs.make.make_vector_env); terminated and truncated stay apart. Each env
is its own Gymnasium env, seeded as SyncVectorEnv seeds it (`per_env`), never an id's native
vector env: that keeps a RemoteVectorEnv's trajectories the same however its envs are split
across servers. Reset seeds and options, the vector env's numeric infos and get_attr /
set_attr / call travel as typed arrays (beast/poly/wire_values.py), never pickled.

Run one with::

    python -m beast.poly.env_server --env CartPole-v1 --num-envs 16 --address 127.0.0.1:0
    python -m beast.poly.env_server --env ALE/Pong-v5 --num-envs 8 --env-backend envpool

Its env flags are those of `python -m beast.mono` (EnvConfig's fields; --num-envs is per
client connection here); `--env-kwargs '{"render_mode": "rgb_array"}'` (a JSON object) goes
to `gym.make`.

It prints the bound address on one line of stdout (so a launcher can ask for port 0) and serves
until SIGTERM or SIGINT, then closes every connection and exits 0.

A non-loopback address (0.0.0.0, ::, a host's own address) needs a shared token, from
BEAST_AUTH_TOKEN or --auth-token (the variable is better: a flag shows in `ps`); without one the
server refuses to start (exit 2). Clients prove the token by challenge-response (csrc/net/wire.h)
with the same variable (RemoteVectorEnv, the launcher) or `auth_token=`. --max-connections and the
--handshake-timeout / --idle-timeout / --send-timeout deadlines bound what clients can hold.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import threading
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from beast.config import EnvConfig
from beast.flags import build_parser, group_from_args
from beast.envs.make import check_env_config, make_vector_env_from_config
from beast.poly._core import EnvServer
from beast.poly.remote_attr import serve_attr
from beast.poly.wire_values import decode_values, encode_info

DEFAULT_ADDRESS = "127.0.0.1:0"
AUTH_TOKEN_ENV = "BEAST_AUTH_TOKEN"


class VectorEnvSession:
    """One client's K envs; the C++ server calls these from that client's connection thread."""

    def __init__(self, env_config: EnvConfig, env_kwargs: Mapping[str, Any] | None = None) -> None:
        self.env = make_vector_env_from_config(env_config, per_env=True, env_kwargs=env_kwargs)

    def spec(self) -> dict:
        obs_space = self.env.single_observation_space
        action_space = self.env.single_action_space
        discrete = isinstance(action_space, gym.spaces.Discrete)
        return {
            "observation_shape": tuple(obs_space.shape),
            "observation_dtype": np.dtype(obs_space.dtype),
            "action_shape": tuple(action_space.shape),
            "action_dtype": np.dtype(action_space.dtype),
            "num_actions": int(action_space.n) if discrete else 0,
            "num_envs": int(self.env.num_envs),
        }

    def reset(self, request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """RESET's arrays (checked by the C++ server: csrc/net/wire.h) -> obs and infos."""
        options = decode_values(request, "option/")
        obs, info = self.env.reset(seed=_seed(request), options=options or None)
        return {"obs": np.asarray(obs), **encode_info(info, self.env.num_envs)}

    def step(self, action: np.ndarray) -> dict[str, np.ndarray]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        result = {"obs": np.asarray(obs), "reward": np.asarray(reward),
                  "terminated": np.asarray(terminated), "truncated": np.asarray(truncated)}
        if "game_over" in info:  # episodic life: which ends are whole games (beast.envs.atari)
            result["game_over"] = np.asarray(info["game_over"], bool)
        result.update(encode_info(info, self.env.num_envs))
        return result

    def attr(self, request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """ATTR: get_attr / set_attr / call on the K envs (beast.poly.remote_attr)."""
        return serve_attr(self.env, request)

    def close(self) -> None:
        self.env.close()


def _seed(request: dict[str, np.ndarray]) -> int | list[int | None] | None:
    """RESET's seeds as SyncVectorEnv.reset takes them: None, s (env i gets s + i) or one per env.
    A list of consecutive seeds goes as its first, which every vector env takes."""
    if "seed" not in request:
        return None
    seed = request["seed"]
    if seed.ndim == 0:
        return int(seed)
    seeded = request.get("seeded", np.ones(seed.shape, bool))
    seeds = [int(s) if given else None for s, given in zip(seed, seeded)]
    if all(seeded) and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return seeds[0]
    return seeds


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    """--env-kwargs: a JSON object (ValueError, one line, otherwise)."""
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--env-kwargs must be a JSON object: {exc}") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--env-kwargs must be a JSON object, got {text!r}")
    return kwargs


def serve(env_config: EnvConfig, address: str = DEFAULT_ADDRESS,
          max_frame_bytes: int | None = None, *, max_connections: int | None = None,
          handshake_timeout: float | None = None, idle_timeout: float | None = None,
          send_timeout: float | None = None, auth_token: str | None = None,
          env_kwargs: Mapping[str, Any] | None = None) -> EnvServer:
    """Start serving `env_config.num_envs` envs per connection; the caller closes it.

    Options left None take the C++ server's defaults (csrc/net/env_server.h); timeouts are in
    seconds (math.inf: none). `auth_token` None or empty means no token, which only a loopback or
    unix address allows (ValueError otherwise). `env_kwargs` go to `gym.make`.
    """
    check_env_config(env_config)  # an unknown id fails here, not at the first client
    if env_kwargs:  # bad kwargs fail here too, not at the first client
        try:
            make_vector_env_from_config(env_config, 1, per_env=True, env_kwargs=env_kwargs).close()
        except TypeError as exc:
            raise ValueError(f"env kwargs {dict(env_kwargs)} do not fit {env_config.env}: {exc}"
                             ) from exc
    options = dict(max_frame_bytes=max_frame_bytes, max_connections=max_connections,
                   handshake_timeout=handshake_timeout, idle_timeout=idle_timeout,
                   send_timeout=send_timeout, auth_token=auth_token or None)
    kwargs = {key: value for key, value in options.items() if value is not None}
    return EnvServer(address, lambda: VectorEnvSession(env_config, env_kwargs), **kwargs)


# Set by a launcher (beast.poly.server_processes) to its pid: the server then dies with the
# thread that started it (PR_SET_PDEATHSIG, set here after exec, where no preexec_fn is needed).
PARENT_PID_ENV = "BEAST_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> bool:
    """SIGTERM when the launcher goes; False if it is already gone (then exit at once)."""
    parent = os.environ.pop(PARENT_PID_ENV, None)
    if parent is None:
        return True
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == int(parent)  # else it died before the prctl took hold


def main(argv: list[str] | None = None) -> int:
    if not die_with_parent():
        return 0
    # The env flags are EnvConfig's own (beast.config), so a launcher passes its env settings
    # with `group_flags(env_config)` and a new env field needs no change here.
    parser = build_parser("python -m beast.poly.env_server", __doc__.split("\n")[0], only=("env",))
    server = parser.add_argument_group("server")
    server.add_argument("--address", default=DEFAULT_ADDRESS,
                        help="HOST:PORT (port 0: a free port) or unix:/path; default %(default)s")
    server.add_argument("--max-frame-bytes", type=int, default=None,
                        help="largest frame accepted (default 64 MiB)")
    server.add_argument("--net-spin-us", type=int, default=None,
                        help="microseconds a socket read busy-polls before blocking (default 100; "
                             "0: off); the BEAST_NET_SPIN_US variable overrides it")
    server.add_argument("--max-connections", type=int, default=None,
                        help="clients served at once; more are refused (default 128)")
    server.add_argument("--handshake-timeout", type=float, default=None,
                        help="seconds for a new client to say HELLO (and prove the token); default 10")
    server.add_argument("--idle-timeout", type=float, default=None,
                        help="seconds a client may take over its next request; default 600")
    server.add_argument("--send-timeout", type=float, default=None,
                        help="seconds to send one reply to a client that is not reading; default 60")
    server.add_argument("--env-kwargs", default=None,
                        help='keyword arguments for gym.make, as a JSON object, e.g. '
                             '\'{"render_mode": "rgb_array"}\'')
    server.add_argument("--auth-token", default=None,
                        help=f"shared token clients must prove (default ${AUTH_TOKEN_ENV}, which is "
                             "better: a flag shows in ps); required for a non-loopback address")
    args = parser.parse_args(argv)
    try:
        env_config = group_from_args(EnvConfig, args)
        check_env_config(env_config)
        env_kwargs = parse_env_kwargs(args.env_kwargs)
    except ValueError as exc:
        parser.error(str(exc))
    if args.net_spin_us is not None:
        if args.net_spin_us < 0:
            parser.error("--net-spin-us must be >= 0")
        os.environ.setdefault("BEAST_NET_SPIN_US", str(args.net_spin_us))

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = serve(env_config, args.address, args.max_frame_bytes,
                       max_connections=args.max_connections,
                       handshake_timeout=args.handshake_timeout, idle_timeout=args.idle_timeout,
                       send_timeout=args.send_timeout,
                       auth_token=args.auth_token or os.environ.get(AUTH_TOKEN_ENV),
                       env_kwargs=env_kwargs)
    except ValueError as exc:  # a bad option, or a non-loopback address without a token
        print(f"beast env server: {exc}", file=sys.stderr)
        return 2
    try:
        print(server.address, flush=True)
        while not stop.wait(0.5):  # a bounded wait, so the signal handler gets to run
            pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
