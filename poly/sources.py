"""PolyBeast's batch source: env servers → C++ actor pool → central inference → learner.

    env server processes (K envs per connection)
        ⇅ wire frames (csrc/net)
    ActorPool: one C++ thread per connection ──compute(row)──► DynamicBatcher
        │                                                        │ get_batch
        │ unrolls [T+1, K]                          inference thread: policy_step
        ▼                                           (beast.acting), stamp the version
    BatchingQueue ──dequeue(B)──► next_batch() ──► Learner.step (beast.training)

The pool writes the agent half of the rollout from the schema it is given
(beast.rollout.RolloutSpec: key -> dtype and shape), so a model's extra outputs reach the
learner with no C++ change. The inference model is a CPU copy of the learner's: the one policy
copy the sync driver (beast.sync) keeps in sync, whose drift is the KL the learner measured on
the batch. `publish_weights` only hands the learner over; the driver decides when the copy is
made. Shutdown order matters: the pool
first (it closes its env connections), then the batcher and the queue (waking any thread
blocked in them), then the inference thread, then the server watcher and the servers.
"""

from __future__ import annotations

import copy
import os
import secrets
import threading
import time
import traceback
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.acting import carry_keys, policy_step
from beast.config import Config
from beast.learner import Learner
from beast.rollout import Batch, EpisodeCounter, RolloutSpec
from beast.sync import SyncDriver, controller_from_config
from beast.training import SourceFailure
from beast.poly._core import ActorPool, BatchingQueue, DynamicBatcher
from beast.poly.server_processes import LocalEnvServers
from beast.poly.server_watch import ServerWatcher


class InferenceThread:
    """Answers the actor pool's batched requests with the inference model."""

    def __init__(self, model: nn.Module, batcher: DynamicBatcher, seed: int) -> None:
        self.model = model
        self.carry_keys = carry_keys(model)
        self.version = -1  # no learner weights yet; the first publish copies them
        self.lock = threading.Lock()  # model weights and version change together
        self.batcher = batcher
        self.generator = torch.Generator().manual_seed(seed)
        self.error: str | None = None
        self.loaded = threading.Event()  # act only with the learner's weights (e.g. resumed)
        self.thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.thread.start()

    @torch.inference_mode()
    def _run(self) -> None:
        for batch in self.batcher:  # ends when the batcher is closed
            self.loaded.wait()
            try:
                batch.set_outputs(self._infer(batch.inputs))
            except Exception:  # fail this batch's callers now, and the run soon after
                self.error = traceback.format_exc()
                batch.set_error(self.error)

    def _infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One time step over the n*K envs of a batch ([n, K, ...] inputs), as mono's actors act."""
        obs = torch.from_numpy(inputs["obs"])
        lead = obs.shape[:2]
        done = torch.from_numpy(inputs["terminated"] | inputs["truncated"]).flatten()
        carry = {key: torch.from_numpy(inputs[key]).flatten(0, 1) for key in self.carry_keys}
        reward = torch.from_numpy(inputs["reward"]).flatten()
        with self.lock:
            agent, next_carry = policy_step(self.model, obs.flatten(0, 1), carry, done,
                                            self.generator, self.version, reward=reward)
        agent.update(next_carry)  # the pool records the values it sent, feeds these back
        return {key: value.unflatten(0, lead).numpy() for key, value in agent.items()}

    def load(self, learner: Learner) -> None:
        with self.lock, torch.no_grad():
            for target, source in zip(self.model.parameters(), learner.model.parameters()):
                target.copy_(source)
            self.version = learner.version
        self.loaded.set()


def dequeue_batch(queue: BatchingQueue, batch_size: int, timeout: float,
                  closed_reason: Callable[[], str]) -> dict[str, np.ndarray] | None:
    """`batch_size` unrolls joined, or None if they did not come within `timeout`.

    A poll (timeout <= 0) takes whole batches only: dequeue's timeout returns what is queued,
    and a reuse buffer polls before every use. Only the learner's thread dequeues, so the queue
    holds at least a batch from the check to the dequeue. A closed queue is a SourceFailure
    saying `closed_reason()`."""
    if timeout <= 0 and len(queue) < batch_size:
        return None
    try:
        return queue.dequeue(batch_size, batch_size, timeout)
    except TimeoutError:
        return None
    except StopIteration:
        raise SourceFailure(closed_reason()) from None


def _place_servers(config: Config, net_spin_us: int, token: str | None,
                   log: Callable[[str], None]) -> tuple[Any, list[str]]:
    """(servers or None, addresses): Ray-placed (--ray-address), local (started here) or
    given (--server-addresses; None: whoever started them restarts them)."""
    poly = config.poly
    if poly.server_addresses:
        return None, list(poly.server_addresses)
    if poly.ray_address:
        from beast.poly.cluster import RayEnvServers  # needs the [ray] extra

        try:
            servers = RayEnvServers(config.env, ray_address=poly.ray_address,
                                    servers_per_node=poly.servers_per_node, token=token,
                                    num_cpus=poly.server_cpus, resources=poly.ray_resources(),
                                    net_spin_us=net_spin_us)
        except ValueError as exc:  # no cluster there, no room on it, no [ray] extra
            raise SourceFailure(str(exc)) from None
        log(f"[beast] ray: {len(servers.addresses)} env servers on {servers.num_nodes} nodes "
            f"of {poly.ray_address}")
        return servers, servers.addresses
    servers = LocalEnvServers(config.env, poly.num_servers, net_spin_us)
    return servers, servers.addresses


class PolySource:
    """The `BatchSource` of PolyBeast (see beast.training).

    Lost env servers do not stop the run: the actor pool reconnects (csrc/actor/actor_pool.h),
    and the servers' placer (Ray, or LocalEnvServers here) restarts dead ones, whose new
    addresses a ServerWatcher hands to the pool. `restarts` counts the reconnections."""

    def __init__(self, config: Config, model: nn.Module, observation_space: gym.Space,
                 action_space: gym.Space, generation: int, log: Callable[[str], None]) -> None:
        run, poly = config.run, config.poly
        self.batch_size = run.batch_size
        # Socket reads busy-poll briefly before blocking (csrc/net/socket.h): best latency for
        # one client, but in training the spinning threads take cores from envs, inference and
        # the learner (on 2 cores: ~80k instead of ~106k steps/s). --net-spin-us (default 0),
        # set before the first read here and passed to the env servers started below; the
        # BEAST_NET_SPIN_US variable overrides it.
        net_spin_us = int(os.environ.setdefault("BEAST_NET_SPIN_US", str(poly.net_spin_us)))
        # Local servers inherit BEAST_AUTH_TOKEN; Ray-placed ones bind their node's address, so
        # they need a token: the variable's, else a fresh one for this run (never on a
        # command line).
        token = os.environ.get("BEAST_AUTH_TOKEN") or (
            secrets.token_hex(32) if poly.ray_address else None)
        self.log = log
        self.watcher: ServerWatcher | None = None
        self.servers, addresses = _place_servers(config, net_spin_us, token, log)
        try:
            num_connections = max(1, run.num_actors)
            connections = [addresses[i % len(addresses)] for i in range(num_connections)]
            log(f"[beast] {num_connections} actor connections to {len(addresses)} env servers")
            self.queue = BatchingQueue(max(2 * run.batch_size, num_connections + 1), batch_dim=1,
                                       stack=False)
            self.batcher = DynamicBatcher(max_pending=num_connections)
            self.inference = InferenceThread(copy.deepcopy(model).cpu(), self.batcher,
                                             seed=run.seed * 7919 + generation)
            self._learner: Learner | None = None
            self._syncs = 0
            self.sync = SyncDriver(controller_from_config(config.sync, 1),  # one policy copy
                                   weight_bytes=4 * sum(p.numel() for p in model.parameters()),
                                   held_version=lambda copy: self.inference.version,
                                   request=self._load_inference)
            self.counter = EpisodeCounter()
            agent = RolloutSpec.build(observation_space, model).agent
            agent_spec = {k: (f.dtype, list(f.shape)) for k, f in agent.items()}
            self.pool = ActorPool(run.unroll_length, self.queue, self.batcher, connections,
                                  seed=run.seed * 1_000_003 + generation * 7_919_993,
                                  agent_spec=agent_spec,
                                  action_key="action",
                                  state_keys=carry_keys(model),
                                  connect_timeout=poly.step_timeout, auth_token=token,
                                  unreachable_timeout=poly.unreachable_timeout)
            self.pool.start()
            if self.servers is not None:
                self.watcher = ServerWatcher(self.servers, on_replaced=self.pool.replace_address,
                                             log=log, hang_timeout=poly.step_timeout)
            self._closed = False
        except BaseException:  # leave no server behind a run that never started
            if self.servers is not None:
                self.servers.close()
            raise

    @property
    def restarts(self) -> int:
        return self.pool.num_reconnects

    def next_batch(self, timeout: float) -> Batch | None:
        for line in self.pool.drain_events():
            self.log(f"[beast] actor pool: {line}")
        error = self.pool.error  # the first actor-thread error (no server reachable, env raised)
        if error is not None:
            raise SourceFailure(error)
        if self.inference.error is not None:
            raise RuntimeError(f"inference failed:\n{self.inference.error}")
        batch = dequeue_batch(self.queue, self.batch_size, timeout,
                              lambda: self.pool.error or "the rollout queue was closed")
        if batch is None:
            return None
        self.counter.add(batch)
        return Batch({key: torch.from_numpy(value) for key, value in batch.items()}, owners=(0,))

    def publish_weights(self, learner: Learner) -> None:
        """Hand the learner over; the sync driver decides when the inference model copies it
        (the first copy is made at once: inference waits for it)."""
        first = self._learner is None
        self._learner = learner
        if first:
            self.sync.copy_started(0, learner.version, time.monotonic())

    def _load_inference(self, copy: int) -> None:
        if self._learner is not None:
            self.inference.load(self._learner)
            self._syncs += 1

    def metrics(self) -> dict[str, float]:
        return {**self.sync.metrics(self._syncs),
                "poly/reconnects": float(self.pool.num_reconnects),
                "poly/dropped_unrolls": float(self.pool.num_dropped_unrolls),
                "poly/connected": float(self.pool.num_connected)}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool.close()
        self.batcher.close()
        self.queue.close()
        self.inference.loaded.set()  # a batch waiting for first weights fails on the closed batcher
        self.inference.thread.join(timeout=5)
        if self.watcher is not None:
            self.watcher.close()
        if self.servers is not None:
            self.servers.close()
