"""Remote actors placed on a Ray cluster (`polybeast --actors remote --ray-address ADDR`).

    Ray cluster (head + workers)                          the learner's machine
    ┌ node 1 ─────────────────────┐
    │ RemoteActorHost (Ray actor) │ ── UNROLL frames ──►  ActorServer (C++) ─► BatchingQueue
    │   beast.poly.actor's loop   │ ◄─ WEIGHTS, only when     on NODE_IP:PORT, token handshake
    └─────────────────────────────┘    the sync controller
    ┌ node 2 ─────────────────────┐    flags this actor
    │ RemoteActorHost ...         │ ◄────────────────────►
    └─────────────────────────────┘

Ray places the actor processes (spread over the nodes) and restarts any that die; Beast's own
wire carries every unroll and weight message, exactly as for an actor started by hand
(beast.poly.actor). Each host runs that module's `run` loop in a thread of its Ray worker
process; a restarted host is a new session, which the learner counts as a restart. The token
travels to each host as an actor argument inside Ray, never on a command line.

Call loop (beast.poly.remote_source):

    actors = RayActors(config, generation, token)        # joins the cluster, checks room
    server = ActorServer(actors.bind_address(config.poly.actor_address), ...)
    actors.start(server.address)                          # waits until every host runs
    ...
    actors.poll()        # at most once a second: RuntimeError once a host stopped for good
    actors.close()       # kills the hosts (and leaves Ray, if this object joined it)

`ray` is optional (`pip install -e ".[ray]"`); it is imported through beast.poly.cluster.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Any, Mapping

from beast.config import Config, EnvConfig, ModelConfig
from beast.mono.actor import actor_seed
from beast.poly.actor import CONNECT_TIMEOUT, RECONNECT_TIMEOUT
from beast.poly.cluster import START_TIMEOUT, join_ray, nodes_with

POLL_INTERVAL = 1.0  # seconds between two status rounds (a Ray call per host)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


class RemoteActorHost:
    """The Ray actor: one remote actor (K envs, a policy copy) in this Ray worker process.

    Ray re-runs `__init__` when it restarts the host after its process died; the restarted actor
    then gets a seed of its own, so it does not replay the dead one's episodes.
    """

    def __init__(self, env: Mapping[str, Any], model: Mapping[str, Any], unroll_length: int,
                 seed: int, learner: str, token: str, timeout: float,
                 reconnect_timeout: float) -> None:
        import ray

        from beast.poly.actor import FatalActorError, RemoteActor, run

        context = ray.get_runtime_context()
        self.node_id = context.get_node_id()
        if context.was_current_actor_reconstructed:
            seed = seed * 31 + os.getpid()
        self.error: str | None = None
        self.actor: RemoteActor | None = None

        def act() -> None:
            try:
                self.actor = RemoteActor(EnvConfig(**env), ModelConfig(**model), unroll_length,
                                         seed)
                run(self.actor, learner, timeout, reconnect_timeout, token)
                self.error = f"the learner at {learner} was unreachable for {reconnect_timeout:.0f} s"
            except FatalActorError as exc:
                self.error = str(exc)
            except Exception as exc:  # an env that fails to build or raises: say which
                self.error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"

        self._thread = threading.Thread(target=act, name="beast-remote-actor", daemon=True)
        self._thread.start()

    def status(self) -> tuple[str, str | None]:
        """(node id, why this actor stopped, or None while it acts)."""
        return self.node_id, self.error

    def pid(self) -> int:
        return os.getpid()


@dataclasses.dataclass
class _Host:
    handle: Any
    node_id: str = ""


class RayActors:
    """`config.run.num_actors` RemoteActorHosts on the Ray cluster of `config.poly.ray_address`.

    Each asks Ray for --server-cpus CPUs and --server-resources, and the hosts are spread over
    the nodes that have them (Ray's SPREAD strategy). Restarts are Ray's; `restarts` stays 0
    here because the learner counts them as reconnected sessions.
    """

    def __init__(self, config: Config, generation: int, token: str) -> None:
        if not token:
            raise ValueError("remote actors placed by Ray need an auth token")
        self.config = config
        self.generation = generation * 1_000
        self.restarts = 0
        self.token = token
        poly = config.poly
        self._needs = {"CPU": poly.server_cpus, **poly.ray_resources()}
        self._ray, self._owns_ray = join_ray(poly.ray_address)
        self._hosts: list[_Host] = []
        self._pending: dict[int, Any] = {}  # host index -> its unanswered status call
        self._next_poll = 0.0
        try:
            nodes_with(self._ray, poly.ray_address, self._needs, "a remote actor")
        except BaseException:
            self.close()
            raise

    def bind_address(self, actor_address: str) -> str:
        """Where the learner accepts these actors: `actor_address`, with a loopback host replaced
        by this node's address (actors on other nodes could not reach it); the port is kept."""
        host, _, port = actor_address.rpartition(":")
        if host not in LOOPBACK_HOSTS:
            return actor_address
        node = self._ray.util.get_node_ip_address()
        return f"[{node}]:{port}" if ":" in node else f"{node}:{port}"

    def start(self, learner: str, start_timeout: float = START_TIMEOUT) -> None:
        """Places the hosts and waits until each one runs (a one-line ValueError if they do not
        all start within `start_timeout` seconds, or one of them failed at once)."""
        ray, config = self._ray, self.config
        run, poly = config.run, config.poly
        actor = ray.remote(RemoteActorHost)
        resources = poly.ray_resources()
        for i in range(run.num_actors):
            handle = actor.options(num_cpus=poly.server_cpus, resources=resources,
                                   max_restarts=-1, scheduling_strategy="SPREAD").remote(
                dataclasses.asdict(config.env), dataclasses.asdict(config.model),
                run.unroll_length, actor_seed(run.seed, i, self.generation), learner,
                self.token, CONNECT_TIMEOUT, RECONNECT_TIMEOUT)
            self._hosts.append(_Host(handle))
        refs = [host.handle.status.remote() for host in self._hosts]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=start_timeout)
        if len(ready) < len(refs):
            raise ValueError(f"only {len(ready)} of {len(refs)} remote actors started on the Ray "
                             f"cluster within {start_timeout:.0f} s: are --server-cpus / "
                             "--server-resources available on its nodes?")
        for host, (node_id, _) in zip(self._hosts, ray.get(refs)):
            host.node_id = node_id

    @property
    def num_nodes(self) -> int:
        return len({host.node_id for host in self._hosts})

    def pids(self) -> list[int]:
        """The hosts' process ids (tests kill one to see Ray restart it)."""
        return self._ray.get([host.handle.pid.remote() for host in self._hosts])

    def poll(self) -> int:
        """Reads the hosts' status without waiting (a round at most every POLL_INTERVAL s);
        RuntimeError, one line, once one of them stopped for good (a refused token, a refused
        unroll, a bad WEIGHTS frame, an env that raised). A host whose process died is Ray's
        to restart, not an error. Returns 0: restarts are counted by the learner."""
        ray = self._ray
        if self._pending:
            ready, _ = ray.wait(list(self._pending.values()), num_returns=len(self._pending),
                                timeout=0)
            for index, ref in [(i, r) for i, r in self._pending.items() if r in set(ready)]:
                del self._pending[index]
                try:
                    _, error = ray.get(ref)
                except ray.exceptions.RayError:  # died meanwhile: Ray restarts it
                    continue
                if error is not None:
                    raise RuntimeError(f"remote actor {index} on the Ray cluster stopped: {error}")
        now = time.monotonic()
        if not self._pending and now >= self._next_poll:
            self._next_poll = now + POLL_INTERVAL
            self._pending = {i: host.handle.status.remote() for i, host in enumerate(self._hosts)}
        return 0

    def close(self) -> None:
        """Stops every host (and Ray, if this object joined it); never the cluster itself."""
        ray = self._ray
        hosts, self._hosts = self._hosts, []
        for host in hosts:
            try:
                ray.kill(host.handle, no_restart=True)
            except Exception:  # already gone
                pass
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
            self._owns_ray = False
