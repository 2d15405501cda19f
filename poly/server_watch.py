"""A thread that keeps the actor pool's addresses true while env servers are restarted.

    servers (RayEnvServers or LocalEnvServers) ──poll()──► ServerWatcher ──► on_replaced(old, new)
                                               ◄─restart(addr)─┘ (silent too long)

Whoever placed the servers restarts them (Ray for beast.poly.cluster, the launcher for
beast.poly.server_processes); a restarted server has a new address, which the watcher hands to
ActorPool.replace_address so that the pool reconnects to it. A server that stops answering its
placer for `hang_timeout` seconds while its process lives (SIGSTOP, a wedged env) is killed so
that it is restarted too.

    watcher = ServerWatcher(servers, on_replaced=pool.replace_address, log=print)
    ...                     # training; each event is one log line
    watcher.close()         # before servers.close()
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Protocol


class ServerSet(Protocol):
    def poll(self, timeout: float) -> tuple[list[tuple[str, str]], list[str]]:
        """(replaced [(old, new)], silent [address]) since the last poll."""

    def restart(self, address: str) -> bool:
        """Kill the server at `address` so that it is started again."""


class ServerWatcher:
    """Polls `servers` every `interval` seconds (see the module docstring)."""

    def __init__(self, servers: ServerSet, on_replaced: Callable[[str, str], Any],
                 log: Callable[[str], None], *, hang_timeout: float = 10.0,
                 interval: float = 0.5) -> None:
        self.servers = servers
        self.on_replaced = on_replaced
        self.log = log
        self.hang_timeout = hang_timeout
        self.interval = interval
        self._silent_since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check(timeout=self.interval)
            except Exception as exc:  # Ray going away at shutdown, a lost head, a failed start
                if not self._stop.is_set():
                    self.log(f"[beast] env server watch failed: {' '.join(str(exc).split())}")

    def check(self, timeout: float) -> None:
        """One poll: hand over replaced servers, kill ones silent for `hang_timeout`."""
        replaced, silent = self.servers.poll(timeout)
        now = time.monotonic()
        for old, new in replaced:
            self._silent_since.pop(old, None)
            self.on_replaced(old, new)
            self.log(f"[beast] env server {old} came back as {new}")
        for address in list(self._silent_since):
            if address not in silent:
                del self._silent_since[address]
        for address in silent:
            since = self._silent_since.setdefault(address, now)
            if now - since >= self.hang_timeout:
                self.log(f"[beast] env server {address} has not answered for "
                         f"{now - since:.0f} s: restarting it")
                self.servers.restart(address)
                self._silent_since[address] = now  # give the restart its own hang_timeout

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
