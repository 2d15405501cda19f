"""Env servers the launcher starts on this machine, restarted when one dies.

    LocalEnvServers ── starts N × `python -m beast.poly.env_server --address 127.0.0.1:0`
        .addresses          each server's address now
        .poll()             restarts the exited ones on new ports: [(old, new)], []
        .close()            SIGTERM to each (SIGKILL after 3 s)

`poll` has the shape of beast.poly.cluster.RayEnvServers.poll, so one
beast.poly.server_watch.ServerWatcher hands replacements to the actor pool whichever placed the
servers. Each server runs in its own session, so a Ctrl-C meant for the launcher does not kill
it mid-run (the launcher stops it in order), and it sets PR_SET_PDEATHSIG itself after exec
(beast.poly.env_server), so a killed launcher leaves no server behind; no `preexec_fn`, which is
unsafe once threads run. The death signal follows the thread that started the server: the
launcher's main thread, or the watcher thread for a restarted one, both alive for the run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from beast.config import EnvConfig
from beast.flags import group_flags
from beast.poly.env_server import PARENT_PID_ENV


class EnvServerProcess:
    """`python -m beast.poly.env_server` on a free local port; stopped with SIGTERM."""

    def __init__(self, env: EnvConfig, net_spin_us: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "beast.poly.env_server", *group_flags(env),
             "--address", "127.0.0.1:0", "--net-spin-us", str(net_spin_us)],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
            env={**os.environ, PARENT_PID_ENV: str(os.getpid())})
        self.address = self.process.stdout.readline().strip()
        if not self.address:
            code = self.process.wait(timeout=10)
            raise RuntimeError(f"env server for {env.env} failed to start (exit code {code})")

    def stop(self, timeout: float = 3.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process.stdout.close()


class LocalEnvServers:
    """`count` env servers on 127.0.0.1; `poll` restarts any that exited."""

    def __init__(self, env: EnvConfig, count: int, net_spin_us: int) -> None:
        self.env, self.net_spin_us = env, net_spin_us
        self._lock = threading.Lock()
        self._servers: list[EnvServerProcess] = []
        try:
            for _ in range(count):
                self._servers.append(EnvServerProcess(env, net_spin_us))
        except BaseException:
            self.close()
            raise

    @property
    def addresses(self) -> list[str]:
        with self._lock:
            return [server.address for server in self._servers]

    def poll(self, timeout: float = 0.0) -> tuple[list[tuple[str, str]], list[str]]:
        """(replaced, silent): (old, new) for each server that had exited and was started again
        on a new port; never any silent ones (a hung local server is left to the actor pool's
        step timeout). `timeout` is there for the watcher's sake: nothing here waits on it."""
        with self._lock:
            servers = list(self._servers)
        replaced = []
        for i, server in enumerate(servers):
            if server.process.poll() is None:
                continue
            server.stop()
            fresh = EnvServerProcess(self.env, self.net_spin_us)  # RuntimeError if it fails
            with self._lock:
                if i >= len(self._servers):  # closed meanwhile
                    fresh.stop()
                    break
                self._servers[i] = fresh
            replaced.append((server.address, fresh.address))
        return replaced, []

    def restart(self, address: str) -> bool:
        """Kills the server at `address`; the next poll starts it again."""
        with self._lock:
            servers = [server for server in self._servers if server.address == address]
        for server in servers:
            server.process.kill()
        return bool(servers)

    def close(self) -> None:
        with self._lock:
            servers, self._servers = self._servers, []
        for server in servers:
            server.stop()
