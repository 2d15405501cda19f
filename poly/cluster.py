"""Env servers placed on a Ray cluster: Ray places and restarts them, Beast's wire carries steps.

    Ray cluster (head + workers)                       the launcher's machine
    ┌ node 1 ──────────────────┐
    │ EnvServerHost (Ray actor)│ ◄── wire frames ───► ActorPool (C++) ─► inference ─► learner
    │   C++ EnvServer NODE_IP:p│        (HMAC token handshake, csrc/net/auth.h)
    └──────────────────────────┘                       ▲
    ┌ node 2 ──────────────────┐                       │ replace_address(old, new)
    │ EnvServerHost ...        │ ◄───────────────────  ServerWatcher (a thread here)
    └──────────────────────────┘   Ray calls: address(), kill on a hang (server_watch.py)

Ray is used for what it is good at, placing processes on nodes and restarting them, and for
nothing on the data path: every env step goes over Beast's own wire protocol from a server
straight to the actor pool (or to a RemoteVectorEnv). Each server is a Ray actor hosting a C++
EnvServer in its own worker process, bound to its node's address on a free port, so it always
uses the token handshake: the token travels to it as an actor argument inside Ray (never on a
command line, so not in `ps`, and never logged), and a server of another run, holding another
token, refuses our clients (and ours refuse it).

Call loop (the launcher's, poly/sources.py)::

    servers = RayEnvServers(env_config, ray_address="auto", servers_per_node=2,
                            token=token, num_cpus=1.0)
    pool = ActorPool(..., servers.addresses, auth_token=token)
    watcher = ServerWatcher(servers, on_replaced=pool.replace_address, log=print)  # server_watch
    ...                      # a killed server: Ray restarts it on a new port, the watcher
    watcher.close()          # hands the new address over and the pool reconnects;
    servers.close()          # a hung one (no answer within hang_timeout) is killed first

`ray` is optional (`pip install -e ".[ray]"`); only this module and ray_actors.py import it.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import threading
from typing import Any, Mapping

from beast.config import EnvConfig
from beast.poly.remote_env import RemoteVectorEnv

# Seconds the placed servers get to start (a fresh Ray worker imports torch and makes envs).
START_TIMEOUT = 120.0


def import_ray() -> Any:
    """`ray`, or a one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise ValueError('--ray-address needs Ray: pip install -e ".[ray]"') from None
    return ray


class EnvServerHost:
    """The Ray actor: one C++ env server in this Ray worker process, on this node's address.

    Ray re-runs `__init__` when it restarts the actor (after its process died), so a restarted
    server is a new one on a new port; `address()` says which.
    """

    def __init__(self, env: Mapping[str, Any], token: str, env_kwargs: Mapping[str, Any] | None,
                 server_options: Mapping[str, Any], net_spin_us: int | None = None) -> None:
        import ray

        from beast.poly.env_server import serve

        if net_spin_us is not None:  # read once, by the server's first socket read
            os.environ["BEAST_NET_SPIN_US"] = str(net_spin_us)

        host = ray.util.get_node_ip_address()
        host = f"[{host}]" if ":" in host else host
        self._server = serve(EnvConfig(**env), f"{host}:0", auth_token=token,
                             env_kwargs=env_kwargs, **server_options)

    def address(self) -> str:
        return self._server.address

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self._server.close()


def _check_reachable(ray_address: str, timeout: float = 5.0) -> None:
    """A one-line ValueError unless the head's HOST:PORT accepts a TCP connection ("auto" is
    Ray's to resolve: it fails at once when there is no cluster)."""
    if ray_address == "auto":
        return
    host, _, port = ray_address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot reach the Ray cluster's head at {ray_address}: {exc}") from None


def join_ray(ray_address: str) -> tuple[Any, bool]:
    """(ray, owns): `ray`, connected to the cluster at `ray_address`; `owns` is True when this
    call connected it (the caller then shuts it down). A one-line ValueError if it cannot."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    _check_reachable(ray_address)  # ray.init would retry an unreachable head for minutes
    try:
        ray.init(address=ray_address, logging_level="warning", log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ValueError(f"cannot join the Ray cluster at {ray_address}: "
                         f"{' '.join(str(exc).split())}") from None
    return ray, True


def nodes_with(ray: Any, ray_address: str, needs: Mapping[str, float],
               what: str) -> list[dict[str, Any]]:
    """The alive nodes whose total resources cover `needs` (a one-line ValueError if none)."""
    nodes = [node for node in ray.nodes() if node.get("Alive") and all(
        node.get("Resources", {}).get(key, 0.0) >= amount
        for key, amount in needs.items() if amount > 0)]
    if not nodes:
        raise ValueError(f"no node of the Ray cluster at {ray_address} has the resources "
                         f"{what} asks for: {dict(needs)}")
    return nodes


@dataclasses.dataclass
class _Placed:
    handle: Any
    address: str
    node_id: str


class RayEnvServers:
    """`servers_per_node` env servers on each alive node of the Ray cluster at `ray_address`.

    `ray_address` is "auto" (the cluster this machine belongs to, or $RAY_ADDRESS) or
    "HOST:PORT" of the head's GCS. Each server asks Ray for `num_cpus` CPUs and `resources`
    (custom resources, e.g. {"env_node": 1}); a node that has less in all gets none, and no
    node having them is a ValueError. A server prefers its node (soft affinity): if the node
    is lost, Ray restarts it on another. `server_options` go to
    beast.poly.env_server.serve (max_connections, idle_timeout, ...); `net_spin_us` sets the
    servers' socket busy-poll (csrc/net/socket.h; None: their default).
    """

    def __init__(self, env: EnvConfig, *, ray_address: str, servers_per_node: int, token: str,
                 num_cpus: float = 1.0, resources: Mapping[str, float] | None = None,
                 env_kwargs: Mapping[str, Any] | None = None,
                 server_options: Mapping[str, Any] | None = None,
                 net_spin_us: int | None = None, start_timeout: float = START_TIMEOUT) -> None:
        if not token:
            raise ValueError("servers placed by Ray need an auth token")
        if servers_per_node < 1:
            raise ValueError(f"--servers-per-node must be >= 1, got {servers_per_node}")
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray, self._owns_ray = join_ray(ray_address)
        self._ray = ray
        self._lock = threading.Lock()
        self._placed: list[_Placed] = []
        try:
            actor = ray.remote(EnvServerHost)
            nodes = nodes_with(ray, ray_address, {"CPU": num_cpus, **(resources or {})},
                               "an env server")
            handles = []
            for node in nodes:
                for _ in range(servers_per_node):
                    handles.append((node["NodeID"], actor.options(
                        num_cpus=num_cpus, resources=dict(resources or {}), max_restarts=-1,
                        max_concurrency=2,  # address() answers while close() waits
                        scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"],
                                                                           soft=True),
                    ).remote(dataclasses.asdict(env), token, dict(env_kwargs or {}),
                             dict(server_options or {}), net_spin_us)))
            addresses = self._start(handles, start_timeout)
            self._placed = [_Placed(handle, address, node_id)
                            for (node_id, handle), address in zip(handles, addresses)]
        except BaseException:
            self.close()
            raise

    def _start(self, handles: list[tuple[str, Any]], timeout: float) -> list[str]:
        ray = self._ray
        refs = [handle.address.remote() for _, handle in handles]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if len(ready) < len(refs):
            for _, handle in handles:
                ray.kill(handle, no_restart=True)
            raise ValueError(f"only {len(ready)} of {len(refs)} env servers started on the Ray "
                             f"cluster within {timeout:.0f} s: are --server-cpus / resources "
                             "available on its nodes?")
        try:
            return ray.get(refs)
        except ray.exceptions.RayActorError as exc:
            raise ValueError(f"an env server failed to start on the Ray cluster: "
                             f"{' '.join(str(exc).split())[:400]}") from None

    @property
    def addresses(self) -> list[str]:
        """Each server's current address, in placement order (node by node)."""
        with self._lock:
            return [placed.address for placed in self._placed]

    @property
    def num_nodes(self) -> int:
        with self._lock:
            return len({placed.node_id for placed in self._placed})

    def pids(self) -> list[int]:
        """The servers' process ids (tests kill one to see it come back)."""
        return self._ray.get([placed.handle.pid.remote() for placed in self._placed])

    def poll(self, timeout: float) -> tuple[list[tuple[str, str]], list[str]]:
        """Asks every server its address, waiting at most `timeout` seconds.

        Returns (replaced, silent): (old, new) for each server that Ray restarted on a new
        address since the last poll, and the addresses of those that did not answer in time
        (restarting, or hung). Thread-safe with `addresses`.
        """
        ray = self._ray
        with self._lock:
            placed = list(self._placed)
        refs = [p.handle.address.remote() for p in placed]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        done = set(ready)
        replaced, silent = [], []
        for server, ref in zip(placed, refs):
            if ref not in done:
                silent.append(server.address)
                continue
            try:
                address = ray.get(ref)
            except ray.exceptions.RayError:  # died between the call and its answer
                silent.append(server.address)
                continue
            if address != server.address:
                replaced.append((server.address, address))
                with self._lock:
                    server.address = address
        return replaced, silent

    def restart(self, address: str) -> bool:
        """Kills the server at `address` so that Ray starts it again (a new port); True if
        one had that address. SIGKILL works on a hung (even stopped) process."""
        with self._lock:
            handles = [p.handle for p in self._placed if p.address == address]
        for handle in handles:
            self._ray.kill(handle, no_restart=False)
        return bool(handles)

    def close(self) -> None:
        """Stops every server this object placed (and Ray, if this object connected it);
        never the cluster itself."""
        ray = self._ray
        with self._lock:
            placed, self._placed = self._placed, []
        for server in placed:
            try:
                ray.kill(server.handle, no_restart=True)
            except Exception:  # already gone
                pass
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False


class RayVectorEnv(RemoteVectorEnv):
    """A RemoteVectorEnv over env servers it placed on a Ray cluster (as `polybeast
    --ray-address` places them); closing it stops them.

        envs = RayVectorEnv("Acrobot-v1", ray_address="auto", servers_per_node=2,
                            num_envs_per_server=4)   # 2 * nodes * 4 envs
        obs, info = envs.reset(seed=0)               # then as any Gymnasium VectorEnv

    Environment i is the i-th of the servers' envs in placement order (node by node), seeded
    as SyncVectorEnv seeds its i-th env. `token` defaults to $BEAST_AUTH_TOKEN, else a fresh
    random one: it only has to match between these servers and this client. A server lost
    mid-episode is not reconnected here (a VectorEnv cannot hide a lost env state): its next
    call raises, as RemoteVectorEnv's do.
    """

    def __init__(self, env_id: str, *, ray_address: str = "auto", servers_per_node: int = 1,
                 num_envs_per_server: int = 4, token: str | None = None, num_cpus: float = 1.0,
                 resources: Mapping[str, float] | None = None,
                 env_kwargs: Mapping[str, Any] | None = None, timeout: float | None = 30.0) -> None:
        token = token or os.environ.get("BEAST_AUTH_TOKEN") or secrets.token_hex(32)
        self.servers = RayEnvServers(EnvConfig(env=env_id, num_envs=num_envs_per_server),
                                     ray_address=ray_address, servers_per_node=servers_per_node,
                                     token=token, num_cpus=num_cpus, resources=resources,
                                     env_kwargs=env_kwargs)
        try:
            super().__init__(self.servers.addresses, env_id=env_id, timeout=timeout,
                             auth_token=token, env_kwargs=dict(env_kwargs or {}) or None)
        except BaseException:
            self.servers.close()
            raise

    def close_extras(self, **kwargs: Any) -> None:
        try:
            super().close_extras(**kwargs)
        finally:
            self.servers.close()
