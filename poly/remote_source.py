"""PolyBeast's batch source with remote actors (`--actors remote`).

    remote actor processes (python -m beast.poly.actor: K envs + a CPU policy copy each)
        │ UNROLL [T+1, K] frames                ▲ WEIGHTS (version, float32 blob), only when
        ▼                                       │ the sync controller flags that actor
    ActorServer (C++: checks each unroll against the schema, tags it with its actor_id)
        │
    BatchingQueue ──dequeue(B)──► next_batch() ──► Learner.step (beast.training)
                                                       └─► SyncDriver.after_step: per-actor
                                                           drift → who gets weights now

Each actor is one policy copy of the sync driver (beast.sync), with the drift the learner
measured on that actor's own columns of the batch; an actor that (re)joins holds no weights and
is sent them at once. `aps/bytes_synced` is what the server really wrote (WEIGHTS frames,
headers included), and `remote/bytes_actor<i>` the same per actor id.

Actors are started here (LocalActors, restarted when they die), placed on a Ray cluster
(--ray-address: RayActors, restarted by Ray; the learner then binds its node's address, with a
token), or started by hand (--no-start-actors: the learner logs its address and waits for them).
"""

from __future__ import annotations

import os
import secrets
import time
from typing import TYPE_CHECKING, Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.config import Config
from beast.learner import Learner
from beast.rollout import Batch, EpisodeCounter, RolloutSpec
from beast.sync import SyncDriver, controller_from_config
from beast.training import SourceFailure
from beast.poly._core import ActorServer, BatchingQueue
from beast.poly.actor import weights_size
from beast.poly.actor_processes import LocalActors
from beast.poly.env_server import AUTH_TOKEN_ENV
from beast.poly.sources import dequeue_batch

if TYPE_CHECKING:
    from beast.poly.ray_actors import RayActors

ACTOR_ID = "actor_id"  # the server's tag on each unroll: [1, K] int64


class RemoteSource:
    """The `BatchSource` of `polybeast --actors remote` (see the module docstring)."""

    def __init__(self, config: Config, model: nn.Module, observation_space: gym.Space,
                 generation: int, log: Callable[[str], None]) -> None:
        run = config.run
        self.log = log
        self.batch_size = run.batch_size
        self.num_envs = config.env.num_envs
        self.num_actors = run.num_actors
        self.queue = BatchingQueue(max(2 * run.batch_size, self.num_actors + 1), batch_dim=1,
                                   stack=False)
        schema = {k: (f.dtype, list(f.shape))
                  for k, f in RolloutSpec.build(observation_space, model).fields.items()}
        # Actors placed by Ray connect from other nodes: the learner binds this node's address
        # and needs a token (the variable's, else a fresh one for this run, handed to them
        # inside Ray).
        token = os.environ.get(AUTH_TOKEN_ENV)
        self.actors: LocalActors | RayActors | None = None
        ray_actors: RayActors | None = None
        address = config.poly.actor_address
        if config.poly.ray_address:
            from beast.poly.ray_actors import RayActors  # needs the [ray] extra

            token = token or secrets.token_hex(32)
            try:
                self.actors = ray_actors = RayActors(config, generation, token)
            except ValueError as exc:  # no cluster there, no room on it, no [ray] extra
                raise SourceFailure(str(exc)) from None
            address = ray_actors.bind_address(address)
        try:
            self.server = ActorServer(address, schema, run.unroll_length, self.num_envs,
                                      weights_size(model), max_actors=self.num_actors,
                                      queue=self.queue, auth_token=token)
        except (OSError, ValueError) as exc:  # the port was taken since the launcher's check
            if ray_actors is not None:
                ray_actors.close()
            raise SourceFailure(f"cannot accept remote actors: {exc}") from None
        self.counter = EpisodeCounter()
        self.sent_version = [-1] * self.num_actors
        self.absent = set(range(self.num_actors))  # ids no actor holds now: never flagged
        self._syncs = 0
        self._learner: Learner | None = None
        self._blob: tuple[int, np.ndarray] | None = None  # the flat weights of one version
        self.sync = SyncDriver(controller_from_config(config.sync, self.num_actors),
                               weight_bytes=4 * weights_size(model),
                               held_version=lambda actor: self.sent_version[actor],
                               request=self._send_weights,
                               pending=lambda actor: actor in self.absent)
        self._closed = False
        try:
            if ray_actors is not None:
                try:
                    ray_actors.start(self.server.address)
                except ValueError as exc:  # they did not all start
                    raise SourceFailure(str(exc)) from None
                log(f"[beast] ray: {self.num_actors} remote actors of {self.num_envs} envs each "
                    f"on {ray_actors.num_nodes} nodes of {config.poly.ray_address}, "
                    f"learner at {self.server.address}")
            elif config.poly.start_actors:
                self.actors = LocalActors(config, self.server.address, generation)
                log(f"[beast] {self.num_actors} remote actors of {self.num_envs} envs each, "
                    f"learner at {self.server.address}")
            else:
                log(f"[beast] waiting for {self.num_actors} remote actors at "
                    f"{self.server.address}: python -m beast.poly.actor --learner "
                    f"{self.server.address} <the env and model flags of this run>")
        except BaseException:
            self.close()
            raise

    @property
    def restarts(self) -> int:
        """Actor sessions beyond each id's first: reconnected or restarted actors."""
        return max(0, self.server.num_sessions - self.num_actors)

    def _flat_weights(self) -> tuple[int, np.ndarray]:
        assert self._learner is not None
        version = self._learner.version
        if self._blob is None or self._blob[0] != version:
            with torch.no_grad():
                flat = nn.utils.parameters_to_vector(self._learner.model.parameters())
            self._blob = (version, flat.detach().to("cpu", torch.float32).numpy())
        return self._blob

    def _send_weights(self, actor: int) -> None:
        if self._learner is None:
            return
        version, blob = self._flat_weights()
        if self.server.send_weights(actor, version, blob):
            self.sent_version[actor] = version
            self._syncs += 1
        else:  # it left meanwhile; its next session starts with an initial sync
            self.absent.add(actor)

    def _admit_joined(self) -> None:
        """Actors that (re)joined hold no weights: each is sent the newest at once."""
        if self._learner is None:
            return  # they stay in the server's list until the first publish
        for actor in self.server.take_joined():
            self.absent.discard(actor)
            self.sent_version[actor] = -1
            self.sync.copy_started(actor, self._learner.version, time.monotonic())

    def next_batch(self, timeout: float) -> Batch | None:
        for line in self.server.drain_events():
            self.log(f"[beast] {line}")
        if self.actors is not None:
            try:
                self.actors.poll()
            except RuntimeError as exc:
                raise SourceFailure(str(exc)) from None
        self._admit_joined()
        batch = dequeue_batch(self.queue, self.batch_size, timeout,
                              lambda: "the rollout queue was closed")
        if batch is None:
            return None
        actor_ids = batch.pop(ACTOR_ID)[0]
        self.counter.add(batch)
        owners = tuple(int(a) for a in actor_ids[::self.num_envs])
        return Batch({key: torch.from_numpy(value) for key, value in batch.items()},
                     owners=owners)

    def publish_weights(self, learner: Learner) -> None:
        """Hand the learner over; the sync driver decides who is sent its weights (actors that
        joined before the first publish are sent them now)."""
        first = self._learner is None
        self._learner = learner
        if first:
            self._admit_joined()

    def metrics(self) -> dict[str, float]:
        row = self.sync.metrics(self._syncs)
        row["aps/bytes_synced"] = float(self.server.bytes_sent)
        row["remote/connected"] = float(self.server.num_connected)
        row["remote/weight_messages"] = float(self.server.weight_messages)
        row["remote/weights_replaced"] = float(self.server.weights_replaced)
        for actor, sent in enumerate(self.server.bytes_sent_per_actor):
            row[f"remote/bytes_actor{actor}"] = float(sent)
        return row

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.actors is not None:
            self.actors.close()
        self.queue.close()
        self.server.close()
