"""Remote actor processes the launcher starts on this machine, restarted when one dies.

    LocalActors ── starts N × `python -m beast.poly.actor --learner ADDRESS <the run's flags>`
        .poll()    restarts the exited ones (a fresh seed each): how many were restarted
        .kill(i)   kills actor process i (tests; the next poll restarts it)
        .close()   SIGTERM to each (SIGKILL after 3 s)

Each process runs in its own session, so a Ctrl-C meant for the launcher does not kill it
mid-unroll, and it sets PR_SET_PDEATHSIG itself (beast.poly.env_server.die_with_parent), so a
killed launcher leaves no actor behind. An actor that keeps dying right after its start (its
stderr line says why) fails the run instead of being restarted for ever.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from beast.config import Config
from beast.flags import group_flags
from beast.mono.actor import actor_seed
from beast.poly.env_server import PARENT_PID_ENV

# Restarts of one actor within this many seconds of its start count as a quick failure; this
# many in a row stop the run.
QUICK_EXIT_SECONDS = 5.0
MAX_QUICK_EXITS = 3


class LocalActors:
    """`config.run.num_actors` actor processes connected to `learner` (see the module doc)."""

    def __init__(self, config: Config, learner: str, generation: int) -> None:
        self.config, self.learner = config, learner
        self.generation = generation * 1_000  # restarts within a session get their own seeds
        self.restarts = 0
        self._processes: list[subprocess.Popen] = []
        self._started: list[float] = []
        self._quick_exits = [0] * config.run.num_actors
        try:
            for i in range(config.run.num_actors):
                self._processes.append(self._start(i))
                self._started.append(time.monotonic())
        except BaseException:
            self.close()
            raise

    def _start(self, index: int) -> subprocess.Popen:
        run = self.config.run
        seed = actor_seed(run.seed, index, self.generation)
        self.generation += 1
        return subprocess.Popen(
            [sys.executable, "-m", "beast.poly.actor", "--learner", self.learner,
             *group_flags(self.config.env), *group_flags(self.config.model),
             "--unroll-length", str(run.unroll_length), "--seed", str(seed)],
            start_new_session=True, env={**os.environ, PARENT_PID_ENV: str(os.getpid())})

    def poll(self) -> int:
        """Restart the processes that exited; RuntimeError once one failed MAX_QUICK_EXITS
        times in a row right after its start."""
        restarted = 0
        for i, process in enumerate(self._processes):
            code = process.poll()
            if code is None:
                continue
            quick = time.monotonic() - self._started[i] < QUICK_EXIT_SECONDS
            self._quick_exits[i] = self._quick_exits[i] + 1 if quick else 0
            if self._quick_exits[i] >= MAX_QUICK_EXITS:
                raise RuntimeError(f"remote actor {i} exited with code {code} within "
                                   f"{QUICK_EXIT_SECONDS:.0f} s of its start {MAX_QUICK_EXITS} "
                                   "times in a row (its reason is on the line above)")
            self._processes[i] = self._start(i)
            self._started[i] = time.monotonic()
            restarted += 1
        self.restarts += restarted
        return restarted

    def kill(self, index: int) -> None:
        self._processes[index].kill()

    def close(self) -> None:
        processes, self._processes = self._processes, []
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(3.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(3.0)
