"""Remote actors (issue 14): `python -m beast.poly.actor` against the learner's ActorServer,
over real processes and loopback sockets.

Parity is exact: the unrolls an actor process sends equal those of beast.acting.UnrollWorker
(MonoBeast's worker) run here with the same seed and weights. Hostile or broken peers are
played by a raw-socket learner speaking csrc/net/wire.h through tests.poly.test_env_server's
independent encoder.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from beast.acting import UnrollWorker
from beast.config import EnvConfig, ModelConfig
from beast.envs.make import make_vector_env_from_config
from beast.flags import group_flags
from beast.models.factory import build_configured_model
from beast.poly._core import ActorClient, ActorServer, BatchingQueue
from beast.poly.actor import RemoteActor, load_weights, weights_size
from beast.rollout import RolloutSpec
from tests.conftest import FAST, REPO, beast_env, children, wait_for
from tests.poly.test_env_server import ERROR, HELLO, frame, read_frame
from tests.poly.test_reconnect import LiveRun

ACTOR_SPEC, UNROLL, WEIGHTS = 12, 13, 14
T, K = 5, 4


def start_actor(address: str, env: EnvConfig, model: ModelConfig, seed: int,
                *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "beast.poly.actor", "--learner", address, *group_flags(env),
         *group_flags(model), "--unroll-length", str(T), "--seed", str(seed), *extra],
        cwd=REPO, env=beast_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.kill()
    _, err = process.communicate(timeout=10)
    return err


def serve(env: EnvConfig, model: torch.nn.Module, max_actors: int = 1
          ) -> tuple[ActorServer, BatchingQueue]:
    envs = make_vector_env_from_config(env)
    schema = {k: (f.dtype, list(f.shape))
              for k, f in RolloutSpec.build(envs.single_observation_space, model).fields.items()}
    queue = BatchingQueue(8, batch_dim=1, stack=False)
    server = ActorServer("127.0.0.1:0", schema, T, env.num_envs, weights_size(model),
                         max_actors=max_actors, queue=queue)
    return server, queue


def build(env: EnvConfig, model: ModelConfig, init_seed: int):
    envs = make_vector_env_from_config(env)
    torch.manual_seed(init_seed)
    net = build_configured_model(envs.single_observation_space, envs.single_action_space, model)
    return envs, net


CASES = {
    "feed-forward, categorical": (EnvConfig(env="CartPole-v1", num_envs=K), ModelConfig()),
    "lstm, categorical": (EnvConfig(env="CartPole-v1", num_envs=K),
                          ModelConfig(use_lstm=True, last_action_reward=True)),
    "feed-forward, gaussian": (EnvConfig(env="Pendulum-v1", num_envs=K), ModelConfig()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_remote_actor_sends_exactly_the_unrolls_of_monos_worker(case: str) -> None:
    env, model_config = CASES[case]
    envs, model = build(env, model_config, init_seed=11)
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach().numpy().copy()
    server, queue = serve(env, model)
    actor = start_actor(server.address, env, model_config, seed=7)
    try:
        assert wait_for(lambda: server.num_connected == 1, timeout=60), stop(actor)
        assert server.take_joined() == [0]
        assert server.send_weights(0, 3, flat)
        received = [queue.dequeue(1, 1, 60.0) for _ in range(2)]
        # mid-run weights: the actor takes them at an unroll boundary
        flat2 = (flat * 0.5).astype(np.float32)
        assert server.send_weights(0, 4, flat2)
        later = [queue.dequeue(1, 1, 60.0) for _ in range(3)]
    finally:
        err = stop(actor)
        server.close()
    worker = UnrollWorker(envs, model, T, seed=7)
    load_weights(model, flat)
    mine = RolloutSpec.build(envs.single_observation_space, model).allocate((T + 1, K))
    versions = []
    for unroll in received + later:
        version = int(unroll["policy_version"][-1, 0])
        versions.append(version)
        if version == 4 and int(mine["policy_version"][-1, 0]) == 3:
            load_weights(model, flat2)
        worker.fill(mine, version)
        assert unroll.pop("actor_id").tolist() == [[0] * K]
        assert sorted(unroll) == sorted(mine), err
        for key, value in mine.items():
            np.testing.assert_array_equal(unroll[key], value, err_msg=key)
    assert versions[:2] == [3, 3] and versions[-1] == 4, versions


def fake_learner(reply):
    """A raw-socket learner on 127.0.0.1: after HELLO it runs reply(conn). Returns its
    address and a thread to join."""
    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = listener.accept()
        with conn, listener:
            assert read_frame(conn)[0] == HELLO
            reply(conn)
            conn.settimeout(5.0)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return f"127.0.0.1:{listener.getsockname()[1]}", thread


def actor_spec(n: int, k: int = K, t: int = T) -> bytes:
    scalar = lambda v: np.array(v, np.int64)  # noqa: E731
    return frame(ACTOR_SPEC, {"actor_id": scalar(0), "num_envs": scalar(k),
                              "unroll_length": scalar(t), "weights_size": scalar(n),
                              "max_in_flight": scalar(2)})


def weights(version: int, blob: np.ndarray) -> bytes:
    return frame(WEIGHTS, {"version": np.array(version, np.int64), "weights": blob})


N = 10
BAD_WEIGHTS = {
    "too few floats": ([weights(1, np.zeros(N - 1, np.float32))],
                       r"'weights' is float32 \[9\], this actor's policy has float32 \[10\]"),
    "float64": ([weights(1, np.zeros(N, np.float64))], r"'weights' is float64 \[10\]"),
    "too large, refused from its header": (
        [weights(1, np.zeros(4 * N + 4096, np.float32))],
        r"refused a WEIGHTS frame of \d+ bytes: this actor's policy has 10 float32"),
    "an old version": ([weights(5, np.zeros(N, np.float32)), weights(5, np.zeros(N, np.float32))],
                       r"version 5 is not newer than the version this actor holds \(5\)"),
    "no version": ([frame(WEIGHTS, {"weights": np.zeros(N, np.float32)})],
                   "it must hold exactly 'version' and 'weights'"),
    "another frame type": ([frame(ACTOR_SPEC)], "expected WEIGHTS or UNROLL_ACK from the learner, got ACTOR_SPEC"),
}


@pytest.mark.parametrize("case", list(BAD_WEIGHTS))
def test_a_bad_weight_message_is_refused_with_a_clear_error(case: str) -> None:
    frames, message = BAD_WEIGHTS[case]

    def reply(conn: socket.socket) -> None:
        conn.sendall(actor_spec(N) + b"".join(frames))

    address, thread = fake_learner(reply)
    client = ActorClient(address, K, T, N, timeout=5.0)
    with pytest.raises(ConnectionError, match=message):
        for _ in frames:
            client.poll_weights(5.0)
    client.close()
    thread.join(10)


def test_the_actor_process_stops_with_one_line_on_bad_weights_or_other_flags() -> None:
    env, model_config = CASES["feed-forward, categorical"]
    _, model = build(env, model_config, init_seed=0)
    n = weights_size(model)
    address, thread = fake_learner(lambda conn: conn.sendall(
        actor_spec(n) + weights(1, np.zeros(n - 1, np.float32))))
    actor = start_actor(address, env, model_config, 0)
    assert actor.wait(60) == 1
    err = actor.stderr.read().strip()
    assert err.count("\n") == 0 and err.startswith("beast actor: protocol error: refused a "
                                                   "WEIGHTS frame"), err
    thread.join(10)
    address, thread = fake_learner(lambda conn: conn.sendall(actor_spec(n, k=K + 1)))
    actor = start_actor(address, env, model_config, 0)
    assert actor.wait(60) == 1
    err = actor.stderr.read().strip()
    assert err == (f"beast actor: learner {address} expects {K + 1} envs per actor (--num-envs), "
                   f"this actor has {K}: start it with the learner's flags"), err
    thread.join(10)


def test_the_server_refuses_unrolls_off_the_schema_and_hostile_frames_and_keeps_serving() -> None:
    env, model_config = CASES["feed-forward, categorical"]
    envs, model = build(env, model_config, init_seed=0)
    server, queue = serve(env, model, max_actors=2)
    n = weights_size(model)
    unroll = RolloutSpec.build(envs.single_observation_space, model).allocate((T + 1, K))
    try:
        good = ActorClient(server.address, K, T, n)
        bad = ActorClient(server.address, K, T, n)
        with pytest.raises(RuntimeError, match="the learner already has its 2 actors"):
            ActorClient(server.address, K, T, n)
        wrong = {**unroll, "obs": unroll["obs"][..., :2].copy()}
        bad.send_unroll(wrong)
        with pytest.raises(RuntimeError, match=r"UNROLL 'obs' must be float32 \[6, 4, 4\], "
                                               r"got float32 \[6, 4, 2\]"):
            bad.poll_weights(10.0)
        bad.close()
        assert wait_for(lambda: server.num_connected == 1, timeout=10)
        port = int(server.address.rsplit(":", 1)[1])
        for hostile, why in [(frame(UNROLL, {**unroll, "extra": np.zeros(3)}),
                              "'extra', which is not a rollout key"),
                             (frame(WEIGHTS), "unexpected WEIGHTS frame from an actor"),
                             (frame(UNROLL)[:12] + (1 << 40).to_bytes(8, "little"),
                              "exceeds the maximum frame size")]:
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.settimeout(10)
                raw.sendall(frame(HELLO))
                assert read_frame(raw)[0] == ACTOR_SPEC
                raw.sendall(hostile)
                kind, arrays = read_frame(raw)
                assert kind == ERROR and why in bytes(arrays["message"]).decode(), arrays
        good.send_unroll(unroll)
        assert queue.dequeue(1, 1, 10.0)["actor_id"].tolist() == [[0] * K]
        assert server.send_weights(0, 1, np.zeros(n, np.float32))
        assert good.poll_weights(10.0)[0] == 1
        events = " | ".join(server.drain_events())
        assert "protocol error" in events and "actor 0" in events, events
    finally:
        server.close()


def test_a_non_loopback_learner_needs_a_token_and_actors_must_prove_it() -> None:
    env, model_config = CASES["feed-forward, categorical"]
    envs, model = build(env, model_config, init_seed=0)
    schema = {"obs": (np.float32, [4])}
    queue = BatchingQueue(4, batch_dim=1, stack=False)
    with pytest.raises(ValueError, match="without an auth token"):
        ActorServer("0.0.0.0:0", schema, T, K, 10, max_actors=1, queue=queue)
    server = ActorServer("127.0.0.1:0", schema, T, K, 10, max_actors=1, queue=queue,
                         auth_token="secret")
    try:
        with pytest.raises(PermissionError, match="wrong auth token"):
            ActorClient(server.address, K, T, 10, auth_token="guess")
        with pytest.raises(PermissionError, match="this client has no token"):
            ActorClient(server.address, K, T, 10)
        assert ActorClient(server.address, K, T, 10, auth_token="secret").actor_id == 0
    finally:
        server.close()


def final_row(run_dir: Path) -> dict[str, str]:
    with (run_dir / "logs.csv").open(newline="") as f:
        return list(csv.DictReader(f))[-1]


def weights_frame_bytes(n: int) -> int:
    """A WEIGHTS frame's size from csrc/net/wire.h: header, count, two arrays."""
    version = 2 + len("version") + 1 + 1 + 8 + 8
    blob = 2 + len("weights") + 1 + 1 + 8 + 8 + 4 * n
    return 20 + 4 + version + blob


@pytest.mark.parametrize("sync, every", [(["--sync", "every-step"], 1),
                                         (["--sync", "periodic", "--sync-period", "4"], 4)])
def test_weights_reach_remote_actors_only_when_the_controller_flags_them(
        run_dir: Path, sync: list[str], every: int) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "beast.poly", *FAST, "--env", "CartPole-v1", "--actors", "remote",
         "--num-actors", "1", "--batch-size", "1", "--total-steps", "10000", *sync,
         "--savedir", str(run_dir.parent), "--run-name", run_dir.name],
        cwd=REPO, env=beast_env(), capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    row = final_row(run_dir)
    versions = int(float(row["version"]))
    expected = 1 + versions // every  # the initial weights, then one every `every` versions
    assert float(row["aps/syncs_total"]) == expected
    # The server wrote or replaced each one; the last may still be in its writer thread when
    # the final row is taken, as may the bytes of the one being written.
    written, replaced = float(row["remote/weight_messages"]), float(row["remote/weights_replaced"])
    assert expected - 1 <= written + replaced <= expected and written >= 1
    _, model = build(EnvConfig(env="CartPole-v1"), ModelConfig(hidden_sizes=(16,)), 0)  # FAST's
    frames, rest = divmod(float(row["aps/bytes_synced"]), weights_frame_bytes(weights_size(model)))
    assert rest == 0 and written <= frames <= written + 1
    assert float(row["aps/bytes_synced"]) == float(row["remote/bytes_actor0"]) > 0


def test_killing_a_remote_actor_mid_run_leaves_training_running(run_dir: Path) -> None:
    run = LiveRun("--env", "CartPole-v1", "--actors", "remote", "--num-actors", "2",
                  "--batch-size", "1", "--total-steps", "100000000",
                  "--savedir", str(run_dir.parent), "--run-name", run_dir.name)
    try:
        run.wait_for_steps_past(run_dir, 0)
        actors = [pid for pid in children(run.process.pid)
                  if "beast.poly.actor" in Path(f"/proc/{pid}/cmdline").read_text()]
        assert len(actors) == 2, actors
        os.kill(actors[0], signal.SIGKILL)
        run.wait_for_line("actor 0")
        run.wait_for_line(" lost: ")
        assert wait_for(lambda: float(final_row(run_dir)["actor_restarts"]) >= 1, 60), \
            run.stderr()[-3000:]
        run.wait_for_steps_past(run_dir, run.steps(run_dir))
        code = run.interrupt()
    finally:
        run.kill()
    assert code == 128 + signal.SIGINT, run.stderr()[-3000:]
    assert float(final_row(run_dir)["remote/connected"]) == 2


def test_an_actor_held_back_longer_than_its_timeout_treats_the_learner_as_lost() -> None:
    """Regression: the wait for an UNROLL_ACK had no deadline, so an actor of a stopped or hung
    learner (here: one whose queue is full and never read) hung for ever instead of timing out
    and reconnecting; the first weights are waited for within the timeout too."""
    env, model_config = CASES["feed-forward, categorical"]
    envs, model = build(env, model_config, init_seed=0)
    spec = RolloutSpec.build(envs.single_observation_space, model)
    schema = {k: (f.dtype, list(f.shape)) for k, f in spec.fields.items()}
    queue = BatchingQueue(1, batch_dim=1, stack=False)
    server = ActorServer("127.0.0.1:0", schema, T, K, weights_size(model), max_actors=2,
                         queue=queue)
    try:
        client = ActorClient(server.address, K, T, weights_size(model), timeout=0.5)
        unroll = spec.allocate((T + 1, K))
        for _ in range(3):  # one queued (and acked), two unacked
            client.send_unroll(unroll)
        with pytest.raises(TimeoutError):
            client.send_unroll(unroll)
        client.close()
        actor = RemoteActor(env, model_config, T, seed=0)
        with pytest.raises(TimeoutError, match="no weights from the learner within 0.5 s"):
            actor.session(ActorClient(server.address, K, T, weights_size(model), timeout=0.5),
                          timeout=0.5)
    finally:
        server.close()
        queue.close()


def test_a_full_queue_holds_actors_back_and_loses_no_unroll() -> None:
    """Regression: a timed-out enqueue took the unroll it was given, so the retry once sent an
    empty item and the actor's connection was dropped whenever the learner fell behind. And an
    actor may run only 2 unacked unrolls ahead (UNROLL_ACK), so a slow learner bounds its lag
    instead of letting unrolls pile up in socket buffers."""
    env, model_config = CASES["feed-forward, categorical"]
    envs, model = build(env, model_config, init_seed=0)
    spec = RolloutSpec.build(envs.single_observation_space, model)
    schema = {k: (f.dtype, list(f.shape)) for k, f in spec.fields.items()}
    queue = BatchingQueue(1, batch_dim=1, stack=False)
    server = ActorServer("127.0.0.1:0", schema, T, K, weights_size(model), max_actors=1,
                         queue=queue)
    try:
        client = ActorClient(server.address, K, T, weights_size(model))
        unrolls = []
        for i in range(4):
            unrolls.append(spec.allocate((T + 1, K)))
            unrolls[-1]["reward"][:] = i
        sent = []

        def send_all() -> None:
            for unroll in unrolls:
                client.send_unroll(unroll)
                sent.append(unroll)

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        assert wait_for(lambda: len(queue) == 1 and len(sent) == 3, timeout=10)
        threading.Event().wait(0.5)  # several 0.1 s enqueue timeouts for the second unroll
        assert len(sent) == 3  # the 4th waits: 1 queued (acked), 2 unacked
        for unroll in unrolls:
            got = queue.dequeue(1, 1, 10.0)
            np.testing.assert_array_equal(got["reward"], unroll["reward"])
        sender.join(10)
        assert server.num_connected == 1, server.drain_events()
        assert not any("lost" in line or "error" in line for line in server.drain_events())
    finally:
        server.close()
