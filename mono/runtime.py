"""MonoBeast's process runtime: actor processes, slot queues, liveness, restarts, shutdown.

Actor i owns slots [i*S, (i+1)*S) of the shared rollouts and has one duplex pipe to the
learner; only slot indices cross it. A monitor thread in the learner process waits on every
pipe and every process sentinel at once, so a full slot is queued for the learner within
microseconds and a dead actor (killed, crashed, or an env that raised) is seen at once — not
at the next timeout. A dead actor is restarted with the slots the learner does not hold,
until `max_restarts` is used up; then `error` is set and `next_full` raises.

Call loop (learner thread)::

    pool = ActorPool(num_actors, slots_per_actor, start_actor, max_restarts, log)
    pool.start()
    while training:
        slots = [pool.next_full(timeout) for _ in range(batch_size)]   # raises ActorFailure
        batch = rollouts.gather(slots); pool.release(slots)
    pool.close()                                                      # idempotent, bounded
"""

from __future__ import annotations

import math
import multiprocessing as mp
import queue
import threading
import time
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Callable

from beast.training import SourceFailure

ACTOR_PRELOAD = ["torch", "gymnasium", "beast.mono.actor"]


def forkserver_context() -> mp.context.ForkServerContext:
    """The context actors start from: a forkserver that has torch imported already, so each
    start (and each restart) is a cheap fork of a process that never ran learner threads.
    Calling it early overlaps the server's imports with the learner's own start-up."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(ACTOR_PRELOAD)
    forkserver.ensure_running()
    return context


# start_actor(actor_id, generation, free_slots) -> (process, learner end of its pipe)
StartActor = Callable[[int, int, list[int]], tuple[BaseProcess, Connection]]


class ActorFailure(SourceFailure):
    """Actors failed more often than allowed; the message carries the last traceback."""


class _Actor:
    def __init__(self, process: BaseProcess, conn: Connection, generation: int) -> None:
        self.process, self.conn, self.generation = process, conn, generation
        self.error: str | None = None
        self.last_seen = time.monotonic()  # its last full slot, or when it got work to do


class ActorPool:
    """Owns the actor processes and routes slot indices between them and the learner."""

    def __init__(self, num_actors: int, slots_per_actor: int, start_actor: StartActor,
                 max_restarts: int, log: Callable[[str], None],
                 actor_timeout: float = math.inf) -> None:
        self.num_actors = num_actors
        self.actor_timeout = actor_timeout
        self.slots_per_actor = slots_per_actor
        self._start_actor = start_actor
        self.max_restarts = max_restarts
        self._log = log
        self.restarts = 0
        self.error: str | None = None
        self._actors: list[_Actor] = []
        self._full: queue.Queue[int | None] = queue.Queue()
        self._with_learner: set[int] = set()  # slots queued for or held by the learner
        self._lock = threading.Lock()  # guards _actors, _with_learner and pipe sends
        self._closing = threading.Event()
        self._monitor = threading.Thread(target=self._monitor_loop, name="actor-monitor",
                                         daemon=True)

    def _owned(self, actor_id: int) -> range:
        return range(actor_id * self.slots_per_actor, (actor_id + 1) * self.slots_per_actor)

    def start(self) -> None:
        with self._lock:
            for actor_id in range(self.num_actors):
                process, conn = self._start_actor(actor_id, 0, list(self._owned(actor_id)))
                self._actors.append(_Actor(process, conn, 0))
        self._monitor.start()

    def next_full(self, timeout: float | None = None) -> int | None:
        """A full slot index, or None after `timeout`; raises ActorFailure once the pool failed."""
        try:
            slot = self._full.get(timeout=timeout)
        except queue.Empty:
            slot = None
        if self.error is not None:
            raise ActorFailure(self.error)
        if slot is None and self._closing.is_set() and timeout is None:
            raise ActorFailure("actor pool closed")
        return slot

    def release(self, slots: list[int]) -> None:
        """Give slots back to their owners once the learner has copied them."""
        with self._lock:
            for slot in slots:
                actor_id = slot // self.slots_per_actor
                actor = self._actors[actor_id]
                if self._idle(actor_id):  # it had nothing to fill: its clock starts now
                    actor.last_seen = time.monotonic()
                self._with_learner.discard(slot)
                try:
                    actor.conn.send(slot)
                except OSError:
                    pass  # owner died; its restart gets every slot the learner does not hold

    def _monitor_loop(self) -> None:
        while not self._closing.is_set():
            with self._lock:
                waitables = {}
                for actor_id, actor in enumerate(self._actors):
                    waitables[actor.conn] = actor_id
                    waitables[actor.process.sentinel] = actor_id
            for ready in wait(list(waitables), timeout=0.5):
                actor_id = waitables[ready]
                self._drain(actor_id)
                if not self._closing.is_set() and not self._actors[actor_id].process.is_alive():
                    self._on_death(actor_id)
            self._kill_hung()

    def _idle(self, actor_id: int) -> bool:
        """Whether every slot of the actor is with the learner (it has nothing to fill)."""
        return all(slot in self._with_learner for slot in self._owned(actor_id))

    def _kill_hung(self) -> None:
        """An actor that had a slot to fill and delivered nothing for `actor_timeout` seconds
        (a hung env) is killed; its death is then handled as a crash: logged and restarted."""
        now = time.monotonic()
        with self._lock:
            for actor_id, actor in enumerate(self._actors):
                if (actor.error is None and actor.process.is_alive()
                        and now - actor.last_seen > self.actor_timeout
                        and not self._idle(actor_id)):
                    actor.error = (f"actor {actor_id} delivered no unroll for "
                                   f"{self.actor_timeout:g} s (--actor-timeout); a hung env?")
                    actor.process.kill()

    def _drain(self, actor_id: int) -> None:
        """Read every message the actor has sent (also after it died: the pipe keeps them)."""
        actor = self._actors[actor_id]
        try:
            while actor.conn.poll():
                message = actor.conn.recv()
                if isinstance(message, int):
                    with self._lock:
                        self._with_learner.add(message)
                        actor.last_seen = time.monotonic()
                    self._full.put(message)
                else:
                    actor.error = message[1]
        except (EOFError, OSError):
            pass

    def _on_death(self, actor_id: int) -> None:
        actor = self._actors[actor_id]
        actor.process.join(timeout=1.0)
        reason = actor.error or f"process exited with code {actor.process.exitcode}"
        self.restarts += 1
        if self.restarts > self.max_restarts:
            self.error = (f"actor {actor_id} died ({reason.strip()}); {self.restarts} actor "
                          f"failures exceed --max-actor-restarts {self.max_restarts}")
            self._full.put(None)  # wake the learner so it sees the error now
            self._closing.set()
            return
        self._log(f"[beast] actor {actor_id} died ({reason.strip()}); restarting "
                  f"(restart {self.restarts} of at most {self.max_restarts})")
        with self._lock:
            actor.conn.close()
            free = [s for s in self._owned(actor_id) if s not in self._with_learner]
            generation = actor.generation + 1
            process, conn = self._start_actor(actor_id, generation, free)
            self._actors[actor_id] = _Actor(process, conn, generation)

    def close(self, timeout: float = 3.0) -> None:
        """Stop every actor: ask, then terminate, then kill. Idempotent; bounded by ~2×timeout."""
        self._closing.set()
        self._full.put(None)
        if self._monitor.is_alive() and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=timeout)
        with self._lock:
            actors = list(self._actors)
        for actor in actors:
            try:
                actor.conn.send(None)
            except OSError:
                pass
        for actor in actors:
            actor.process.join(timeout=timeout)
            if actor.process.is_alive():
                actor.process.terminate()
                actor.process.join(timeout=timeout)
            if actor.process.is_alive():
                actor.process.kill()
                actor.process.join(timeout=timeout)
            actor.conn.close()
