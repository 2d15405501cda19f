"""PolyBeast's batch source: env servers → C++ actor pool → central inference → learner.

    env server processes (K envs per connection)
        ⇅ wire frames (csrc/net)
    ActorPool: one C++ thread per connection ──compute(row)──► DynamicBatcher
        │                                                        │ get_batch
        │ unrolls [T+1, K]                          inference thread: model forward,
        ▼                                           sample actions, stamp the version
    BatchingQueue ──dequeue(B)──► next_batch() ──► Learner.step (beast.training)

The inference model is a CPU copy of the learner's. `publish_weights` asks the sync
controller (every-step, periodic or APS; beast.sync) whether to copy the learner's weights into
it: with central inference there is one policy copy to keep in sync, whose drift is the KL
the loss measured on the batch. Shutdown order matters: the pool
first (it closes its env connections), then the batcher and the queue (waking any thread
blocked in them), then the inference thread, then the server processes.
"""

from __future__ import annotations

import copy
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from beast.config import Config, EnvConfig
from beast.learner import Learner
from beast.models import act_step, sample_actions
from beast.sync import controller_from_config, kl_per_slot, sync_metrics
from beast.poly._core import ActorPool, BatchingQueue, DynamicBatcher


def _detach_but_die_with_parent() -> None:
    """Runs in the env server child before exec: its own session, so a Ctrl-C meant for the
    launcher does not kill it mid-run (the launcher stops it in order), and SIGTERM when the
    launcher dies, so a killed launcher leaves no server behind."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1


class EnvServerProcess:
    """`python -m beast.poly.env_server` on a free local port; stopped with SIGTERM."""

    def __init__(self, env: EnvConfig) -> None:
        flags = (["--episodic-life"] if env.episodic_life else []) + (
            ["--sticky-actions"] if env.sticky_actions else [])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "beast.poly.env_server", "--env", env.env,
             "--num-envs", str(env.num_envs), "--env-backend", env.env_backend,
             "--address", "127.0.0.1:0", *flags],
            stdout=subprocess.PIPE, text=True, preexec_fn=_detach_but_die_with_parent)
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


class InferenceThread:
    """Answers the actor pool's batched requests with the inference model."""

    def __init__(self, model: nn.Module, batcher: DynamicBatcher, seed: int) -> None:
        self.model = model
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
        state = (torch.from_numpy(inputs["core_state"]).flatten(0, 1)
                 if "core_state" in inputs else None)
        with self.lock:
            output = act_step(self.model, obs.flatten(0, 1), state, done)
            version = self.version
        logits, baseline = output.policy_logits.unflatten(0, lead), output.baseline.unflatten(0, lead)
        action = sample_actions(logits, self.generator)
        outputs = {"action": action.numpy(), "policy_logits": logits.numpy(),
                   "baseline": baseline.numpy(),
                   "policy_version": np.full(action.shape, version, np.int64)}
        if output.core_state is not None:
            outputs["core_state"] = output.core_state.unflatten(0, lead).numpy()
        return outputs

    def load(self, learner: Learner) -> None:
        with self.lock, torch.no_grad():
            for target, source in zip(self.model.parameters(), learner.model.parameters()):
                target.copy_(source)
            self.version = learner.version
        self.loaded.set()


class PolySource:
    """The `BatchSource` of PolyBeast (see beast.training)."""

    restarts = 0  # a failed env server fails the run (reconnection comes later)

    def __init__(self, config: Config, model: nn.Module, observation_space: gym.Space,
                 action_space: gym.Space, generation: int, log: Callable[[str], None]) -> None:
        run, poly = config.run, config.poly
        self.batch_size = run.batch_size
        # Socket reads busy-poll briefly before blocking (csrc/net/socket.h): best latency for
        # one client, but in training the spinning threads take cores from envs, inference and
        # the learner (on 2 cores: ~80k instead of ~106k steps/s). Off unless asked for; set
        # before the first read here and inherited by the env servers started below.
        os.environ.setdefault("BEAST_NET_SPIN_US", "0")
        self.servers: list[EnvServerProcess] = []
        addresses = list(poly.server_addresses)
        if not addresses:
            try:
                for _ in range(poly.num_servers):
                    self.servers.append(EnvServerProcess(config.env))
            except BaseException:
                self._stop_servers()
                raise
            addresses = [server.address for server in self.servers]
        num_connections = max(1, run.num_actors)
        connections = [addresses[i % len(addresses)] for i in range(num_connections)]
        log(f"[beast] {num_connections} actor connections to {len(addresses)} env servers")
        self.queue = BatchingQueue(max(2 * run.batch_size, num_connections + 1), batch_dim=1,
                                   stack=False)
        self.batcher = DynamicBatcher(max_pending=num_connections)
        self.inference = InferenceThread(copy.deepcopy(model).cpu(), self.batcher,
                                         seed=run.seed * 7919 + generation)
        self.controller = controller_from_config(config.sync, 1)  # one policy copy to sync
        self._syncs = 0
        self._logged = (0, 0)  # syncs and learner steps at the previous log row
        self._weight_bytes = 4 * sum(p.numel() for p in model.parameters())
        self._last_batch: dict[str, torch.Tensor] | None = None
        # The servers started above read the same variable (they inherit the environment).
        self.pool = ActorPool(run.unroll_length, self.queue, self.batcher, connections,
                              seed=run.seed * 1_000_003 + generation * 7_919_993,
                              core_state_shape=list(model.core_state_shape or ()),
                              auth_token=os.environ.get("BEAST_AUTH_TOKEN") or None)
        self.pool.start()
        self._closed = False

    def next_batch(self, timeout: float) -> dict[str, torch.Tensor] | None:
        self.pool.check()  # the first actor-thread error (dead server, env exception) raises
        if self.inference.error is not None:
            raise RuntimeError(f"inference failed:\n{self.inference.error}")
        try:
            batch = self.queue.dequeue(self.batch_size, self.batch_size, timeout)
        except TimeoutError:
            return None
        except StopIteration:
            self.pool.check()
            raise RuntimeError("the rollout queue was closed")
        self._last_batch = {key: torch.from_numpy(value) for key, value in batch.items()}
        return self._last_batch

    def publish_weights(self, learner: Learner) -> None:
        """Copy the learner's weights to the inference model when the controller says so."""
        now = time.monotonic()
        if self._last_batch is not None and learner.last_kl is not None:
            drift = kl_per_slot(learner.last_kl, learner.last_valid, 1)[0]
            behaviour = int(self._last_batch["policy_version"][1:].min())
            self.controller.observe(0, drift, learner.version - 1, behaviour)
            self.controller.on_learner_step()
            self._last_batch = None
        trigger = self.controller.decide(0, learner.version, self.inference.version, now)
        if trigger is not None:
            self.inference.load(learner)
            self.controller.record_sync(0, trigger, learner.version, now)
            self._syncs += 1

    def metrics(self) -> dict[str, float]:
        row = sync_metrics(self.controller, self._syncs, self._weight_bytes, *self._logged)
        self._logged = (self._syncs, self.controller.learner_steps)
        return row

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.pool.close()
        self.batcher.close()
        self.queue.close()
        self.inference.loaded.set()  # a batch waiting for first weights fails on the closed batcher
        self.inference.thread.join(timeout=5)
        self._stop_servers()

    def _stop_servers(self) -> None:
        for server in self.servers:
            server.stop()
