"""ActorPool (C++, csrc/actor/actor_pool.h) over real env-server processes.

A Python inference thread answers the pool's batched requests with outputs that are fixed
functions of the observation and a version it counts itself, so every value of every unroll is
predictable: the unrolls are checked key by key against mono's `UnrollWorker` stepping a local
copy of the same env, and against closed forms of the counting env. Waits are bounded only to
turn a hang into a failure (JOIN_S); nothing asserts on speed.
"""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

from beast.config import ModelConfig
from beast.envs.make import make_vector_env
from beast.models import build_model
from beast.poly import ActorPool, BatchingQueue, DynamicBatcher
from beast.rollout import RolloutSpec
from tests.conftest import COUNTING
from tests.poly.test_env_server import FAULTY, Server

K = 3
T = 4
JOIN_S = 5.0  # generous bound for "did not hang" / "surfaced promptly"
TRUNCATING = "tests.envs.counting_env:CountingTruncated-v0"  # truncated at step 6, never terminates


def agent(obs: np.ndarray, version: int, num_actions: int) -> dict[str, np.ndarray]:
    """The inference side's outputs for obs [..., K, obs_dim]: fixed functions of obs[..., 0]."""
    count = obs[..., 0]
    return {
        "action": np.abs(count).astype(np.int64) % num_actions,
        "policy_params": (count[..., None] * np.arange(1, num_actions + 1)).astype(np.float32),
        "baseline": (10 * count + 0.5).astype(np.float32),
        "policy_version": np.full(count.shape, version, np.int64),
    }


def agent_spec(num_actions: int) -> dict[str, tuple[type, list[int]]]:
    """The pool's agent spec for `agent`'s outputs (a categorical policy over num_actions)."""
    return {"action": (np.int64, []), "policy_params": (np.float32, [num_actions]),
            "baseline": (np.float32, []), "policy_version": (np.int64, [])}


def rollout_spec(env_id: str) -> RolloutSpec:
    """The schema the runtimes build for `env_id` and one of Beast's feed-forward models."""
    envs = make_vector_env(env_id, 1)
    spaces = envs.single_observation_space, envs.single_action_space
    envs.close()
    return RolloutSpec.build(spaces[0], build_model(*spaces, ModelConfig(hidden_sizes=(8,))))


class Inference:
    """Answers every batch with `agent(obs, version)`; the version counts batches from 0."""

    def __init__(self, batcher: DynamicBatcher, num_actions: int, outputs=agent) -> None:
        self.batcher, self.num_actions, self.outputs = batcher, num_actions, outputs
        self.version = 0
        self.inputs: list[dict[str, np.ndarray]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for batch in self.batcher:
            inputs = batch.inputs
            self.inputs.append(inputs)
            batch.set_outputs(self.outputs(inputs["obs"], self.version, self.num_actions))
            self.version += 1


class Pipeline:
    """Queue, batcher, inference thread and pool, shut down in the documented order."""

    def __init__(self, addresses: list[str], num_actions: int = 3, capacity: int = 64,
                 inference: bool = True, outputs=agent, unroll_length: int = T,
                 **pool_options) -> None:
        self.queue = BatchingQueue(capacity, batch_dim=1, stack=False)
        self.batcher = DynamicBatcher()
        self.inference = Inference(self.batcher, num_actions, outputs) if inference else None
        self.pool = ActorPool(unroll_length, self.queue, self.batcher, addresses, seed=0,
                              agent_spec=agent_spec(num_actions), action_key="action",
                              **pool_options)
        self.pool.start()

    def close(self) -> None:
        self.batcher.close()
        self.pool.close()
        self.queue.close()
        if self.inference is not None:
            self.inference.thread.join(JOIN_S)

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *args) -> None:
        self.close()


def wait_for_error(pool: ActorPool) -> str:
    """pool.check()'s message, which must come within JOIN_S."""
    end = time.monotonic() + JOIN_S
    while time.monotonic() < end:
        try:
            pool.check()
        except RuntimeError as e:
            assert pool.error == str(e)
            return str(e)
        time.sleep(0.01)
    raise AssertionError(f"no error within {JOIN_S} s")


@pytest.fixture(scope="module")
def counting():
    s = Server(COUNTING, K)
    yield s
    assert s.stop() == 0


def mono_unrolls(env_id: str, num_unrolls: int) -> list[dict[str, np.ndarray]]:
    """The reference: mono's UnrollWorker on a local copy of the env, acting through `agent`."""
    from beast.acting import UnrollWorker

    class Worker(UnrollWorker):
        version = 0

        def _act(self, version: int) -> dict[str, np.ndarray]:  # one call per step, like compute
            out = agent(self.step["obs"], self.version, 3)
            self.version += 1
            return out

    envs = make_vector_env(env_id, K, per_env=True)  # as env servers make them
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(8,)))
    spec = RolloutSpec.build(envs.single_observation_space, model)
    worker = Worker(envs, model, T, seed=0)  # acts through `agent`
    unrolls = []
    for _ in range(num_unrolls):
        slot = spec.allocate((T + 1, K))
        worker.fill(slot, 0)
        unrolls.append(slot)
    return unrolls


def test_unrolls_match_mono_unroll_worker_exactly(counting):
    n = 5
    with Pipeline([counting.address]) as p:
        got = [p.queue.dequeue() for _ in range(n)]
    spec = rollout_spec(COUNTING)
    # The hand-written agent spec the pool got is the schema's agent half.
    assert {k: (np.dtype(f.dtype), tuple(f.shape)) for k, f in spec.agent.items()} == {
        k: (np.dtype(d), tuple(shape)) for k, (d, shape) in agent_spec(3).items()}
    for u, (unroll, want) in enumerate(zip(got, mono_unrolls(COUNTING, n))):
        assert sorted(unroll) == sorted(spec.fields)
        for key, field in spec.fields.items():
            assert unroll[key].dtype == field.dtype, key
            assert unroll[key].shape == (T + 1, K, *field.shape), key
            np.testing.assert_array_equal(unroll[key], want[key], err_msg=f"unroll {u} key {key}")

    # Closed forms of the counting env (obs = [count, 0], reward = count, terminates at 5).
    steps = np.arange(n * T + 1)
    for u, unroll in enumerate(got):
        count = np.repeat((steps[u * T:u * T + T + 1] % 6)[:, None], K, axis=1)
        np.testing.assert_array_equal(unroll["obs"][..., 0], count)
        np.testing.assert_array_equal(unroll["reward"], count)
        np.testing.assert_array_equal(unroll["terminated"], count == 5)
        assert not unroll["truncated"].any()
        np.testing.assert_array_equal(unroll["episode_return"], count * (count + 1) / 2)
        np.testing.assert_array_equal(unroll["episode_step"], count)
        np.testing.assert_array_equal(unroll["action"], count % 3)
        np.testing.assert_array_equal(unroll["baseline"], 10 * count + 0.5)
        version = np.arange(u * T, u * T + T + 1)[:, None]  # one compute per step, one thread
        np.testing.assert_array_equal(unroll["policy_version"], np.broadcast_to(version, (T + 1, K)))
        if u > 0:
            for key in unroll:
                np.testing.assert_array_equal(unroll[key][0], got[u - 1][key][-1], err_msg=key)


def test_inference_gets_one_row_per_connection_with_env_fields(counting):
    with Pipeline([counting.address]) as p:
        p.queue.dequeue()
        inputs = list(p.inference.inputs)
    assert sorted(inputs[0]) == ["obs", "reward", "terminated", "truncated"]
    for i, row in enumerate(inputs[:T + 1]):
        assert row["obs"].shape == (1, K, 2) and row["obs"].dtype == np.float32
        assert row["reward"].dtype == np.float32 and row["terminated"].dtype == bool
        assert row["reward"].shape == row["terminated"].shape == row["truncated"].shape == (1, K)
        np.testing.assert_array_equal(row["obs"][..., 0], np.full((1, K), i))
        np.testing.assert_array_equal(row["reward"], np.full((1, K), i))  # reward of the step into o_i


def test_two_servers_two_threads_concatenate_along_k(counting):
    truncating = Server(TRUNCATING, K)
    length = 8  # every unroll then holds an episode end: at count 5 (counting) or 6 (truncating)
    try:
        kinds = set()
        with Pipeline([counting.address, truncating.address], unroll_length=length) as p:
            end = time.monotonic() + JOIN_S  # one server may start serving later than the other
            while kinds != {"counting", "truncating"} and time.monotonic() < end:
                batch = p.queue.dequeue(min_items=2)
                assert all(a.shape[:2] == (length + 1, 2 * K) for a in batch.values())
                for half in (slice(0, K), slice(K, 2 * K)):  # one unroll of one connection each
                    h = {key: value[:, half] for key, value in batch.items()}
                    count = h["obs"][..., 0]
                    kind = "truncating" if h["truncated"].any() else "counting"
                    kinds.add(kind)
                    np.testing.assert_array_equal(h["terminated"], count == 5 if kind == "counting" else False)
                    np.testing.assert_array_equal(h["truncated"], count == 6 if kind == "truncating" else False)
                    np.testing.assert_array_equal(h["reward"], count)
                    np.testing.assert_array_equal(h["episode_step"], count)
                    np.testing.assert_array_equal(h["episode_return"], count * (count + 1) / 2)
                    assert (np.diff(h["policy_version"], axis=0) > 0).all()  # later batches, later versions
            assert p.pool.num_steps >= 2 * length * K
        assert kinds == {"counting", "truncating"}, "one connection never delivered"
    finally:
        assert truncating.stop() == 0


def test_killed_env_server_surfaces_promptly_naming_its_address_without_reconnection():
    doomed = Server(COUNTING, K)  # unreachable_timeout=0: the first loss fails the pool
    with Pipeline([doomed.address], capacity=1000, unreachable_timeout=0) as p:
        p.queue.dequeue()
        assert p.pool.error is None and p.pool.running
        doomed.proc.send_signal(signal.SIGKILL)
        doomed.proc.wait(JOIN_S)
        message = wait_for_error(p.pool)
        assert doomed.address in message and "ConnectionError" in message
        p.pool.close()
        assert not p.pool.running


def test_env_exception_reaches_check_with_its_traceback(counting):
    faulty = Server(FAULTY, K)
    try:
        with Pipeline([faulty.address], num_actions=2) as p:
            message = wait_for_error(p.pool)
        assert "faulty env" in message and faulty.address in message and "Traceback" in message
        # Another spec; no inference, so the counting connection waits in compute meanwhile.
        with Pipeline([counting.address, faulty.address], inference=False) as p:
            message = wait_for_error(p.pool)
        assert "every env server must serve the same" in message
    finally:
        assert faulty.stop() == 0


def test_bad_inference_outputs_fail_the_pool(counting):
    def float_actions(obs, version, num_actions):
        out = agent(obs, version, num_actions)
        return {**out, "action": out["action"].astype(np.float32)}

    def missing_baseline(obs, version, num_actions):
        return {k: v for k, v in agent(obs, version, num_actions).items() if k != "baseline"}

    for outputs, expected in [(float_actions, "'action' must be int64"),
                              (missing_baseline, "no 'baseline'")]:
        with Pipeline([counting.address], outputs=outputs) as p:
            message = wait_for_error(p.pool)
        assert expected in message and counting.address in message


def test_close_with_threads_blocked_in_compute_returns_once_the_batcher_closes(counting):
    p = Pipeline([counting.address, counting.address], inference=False)
    end = time.monotonic() + JOIN_S
    while len(p.batcher) < 2:  # both threads are waiting for inference
        assert time.monotonic() < end, "the threads never called compute"
        time.sleep(0.01)
    closer = threading.Thread(target=p.pool.close)
    closer.start()
    p.batcher.close()
    p.queue.close()
    closer.join(JOIN_S)
    assert not closer.is_alive(), "close() hung"
    assert not p.pool.running and p.pool.error is None  # a closed batcher is a stop, not a failure
    p.pool.close()  # idempotent
    with pytest.raises(RuntimeError, match="after close"):
        p.pool.start()


def test_close_with_threads_blocked_on_a_full_queue_returns_on_its_own(counting):
    p = Pipeline([counting.address, counting.address], capacity=1)
    end = time.monotonic() + JOIN_S
    while p.pool.num_unrolls < 1 or len(p.queue) < 1:
        assert time.monotonic() < end, "nothing was enqueued"
        time.sleep(0.01)
    time.sleep(0.2)  # the other thread reaches its enqueue and waits there
    closer = threading.Thread(target=p.pool.close)  # documented order: pool first, inference live
    closer.start()
    closer.join(JOIN_S)
    assert not closer.is_alive(), "close() hung"
    assert not p.pool.running and p.pool.error is None
    p.close()
    assert p.queue.dequeue()["obs"].shape == (T + 1, K, 2)  # what was queued can be drained


def test_recurrent_core_state_round_trips_and_is_recorded(counting):
    """A real LSTM model behind the real inference thread: the pool sends the state entering
    each step, records it in the unroll, and the learner's replay from core_state[0] gives the
    acted policy parameters (logits) exactly, across episode ends and unroll boundaries."""
    import types

    import torch

    from beast.poly.sources import InferenceThread

    torch.manual_seed(0)
    envs = make_vector_env(COUNTING, 1)
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(8,), use_lstm=True))
    queue = BatchingQueue(16, batch_dim=1, stack=False)
    batcher = DynamicBatcher()
    inference = InferenceThread(build_model(envs.single_observation_space, envs.single_action_space,
                                            ModelConfig(hidden_sizes=(8,), use_lstm=True)), batcher, seed=0)
    inference.load(types.SimpleNamespace(model=model, version=0))
    length = 7  # 5-step episodes + a reset step: ends fall inside and across unrolls
    agent = RolloutSpec.build(envs.single_observation_space, model).agent
    assert agent["core_state"].shape == model.core_state_shape
    pool = ActorPool(length, queue, batcher, [counting.address], seed=0,
                     agent_spec={k: (f.dtype, list(f.shape)) for k, f in agent.items()},
                     action_key="action", state_keys=["core_state"])
    pool.start()
    try:
        got = [queue.dequeue(timeout=JOIN_S) for _ in range(3)]
    finally:
        batcher.close()
        pool.close()
        queue.close()
        inference.thread.join(JOIN_S)
    assert got[0]["core_state"].shape == (length + 1, K, *model.core_state_shape)
    assert (got[0]["core_state"][0] == 0).all()  # the first step starts from zeros
    for previous, current in zip(got, got[1:]):
        np.testing.assert_array_equal(current["core_state"][0], previous["core_state"][-1])
    for unroll in got:
        first = unroll["episode_step"] == 0
        assert (unroll["core_state"][first] == 0).all()
        assert (np.abs(unroll["core_state"][~first]).sum(axis=(1, 2, 3)) > 0).all()
        batch = {k: torch.from_numpy(v) for k, v in unroll.items()}
        with torch.no_grad():
            out = model(batch["obs"], batch["core_state"][0], batch["terminated"] | batch["truncated"])
        torch.testing.assert_close(out.policy_params, batch["policy_params"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.baseline, batch["baseline"], atol=1e-5, rtol=1e-5)


def test_game_over_from_the_server_drives_episode_sums_like_mono():
    """Under episodic life the server sends game_over; the pool's episode sums restart only at
    game ends, exactly as mono's UnrollWorker does from the info."""
    lives = Server("tests.envs.counting_env:CountingLives-v0", K)
    try:
        n = 6
        with Pipeline([lives.address]) as p:
            got = [p.queue.dequeue() for _ in range(n)]
    finally:
        assert lives.stop() == 0
    want = mono_unrolls("tests.envs.counting_env:CountingLives-v0", n)
    assert any(u["terminated"].any() and (u["episode_step"] > 6).any() for u in got)
    for u, (unroll, expected) in enumerate(zip(got, want)):
        for key in expected:
            np.testing.assert_array_equal(unroll[key], expected[key], err_msg=f"unroll {u} key {key}")
