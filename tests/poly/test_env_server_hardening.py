"""Attacks on the env server over real sockets: memory, fds, deadlines, log lines, auth.

Each test reproduces one attack against `python -m beast.poly.env_server` in its own process and
checks the bound that stops it (csrc/net/wire.h, "Limits" and "Deadlines"; csrc/net/auth.h).
Deadlines in these servers are set short; no test asserts on how long anything took.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import resource
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from beast.poly import EnvClient, EnvServer
from beast.poly._core import hmac_sha256
from tests.conftest import REPO, beast_env, wait_for
from tests.poly.test_env_server import (ATTR, ATTR_RESULT, AUTH, CHALLENGE, DEADLINE_S, ERROR,
                                        FAULTY, HELLO, K, MAGIC, RESET, SPEC, STEP, STEP_RESULT,
                                        VERSION, Server, array_body, frame, read_frame)

TOKEN = "correct horse battery staple"
AUTH_CONTEXT = b"beast env auth v2\0"
MIB = 1 << 20


def header(type_: int, length: int) -> bytes:
    return MAGIC + struct.pack("<IIQ", VERSION, type_, length)


def rss_bytes(pid: int) -> int:
    return int(re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text()).group(1)) * 1024


def handshake(sock: socket.socket) -> None:
    sock.sendall(frame(HELLO))
    assert read_frame(sock)[0] == SPEC


def error_text(sock: socket.socket) -> str:
    """The ERROR the server sends before closing (within DEADLINE_S: the socket's timeout)."""
    type_, arrays = read_frame(sock)
    assert type_ == ERROR, type_
    return arrays["message"].tobytes().decode()


def served(address: str, **kwargs) -> bool:
    """Whether a new client gets envs and a step now (False if refused)."""
    try:
        with EnvClient(address, timeout=DEADLINE_S, **kwargs) as client:
            client.reset(seed=0)
            return client.step(np.zeros(client.num_envs, np.int64))["obs"].shape[0] == client.num_envs
    except (RuntimeError, ConnectionError):
        return False


# --- 1. memory amplification ------------------------------------------------------------------


def test_oversized_and_packed_frames_leave_the_server_rss_near_its_baseline():
    server = Server("CartPole-v1", K)
    try:
        assert served(server.address)
        baseline = rss_bytes(server.proc.pid)
        attackers = []
        for before_handshake in (False, True):  # each declares 64 MiB and sends 1 byte of it
            for _ in range(8):
                sock = server.raw_socket()
                if not before_handshake:
                    handshake(sock)
                sock.sendall(header(STEP if not before_handshake else HELLO, 64 * MIB) + b"\0")
                attackers.append(sock)
        packed = server.raw_socket()  # 16 MiB of one-byte arrays, sent in full
        handshake(packed)
        arrays = b"".join(struct.pack("<H", 6) + b"%06d" % i + struct.pack("<BBQ", 2, 0, 1) + b"\1"
                          for i in range(16 * MIB // 19))
        try:
            packed.sendall(frame(STEP, body=struct.pack("<I", 16 * MIB // 19) + arrays))
        except OSError:  # the server may refuse it before it is all sent
            pass
        for sock in attackers + [packed]:
            assert "exceeds the maximum frame size" in error_text(sock)
            sock.close()
        assert served(server.address)
        grown = rss_bytes(server.proc.pid) - baseline
        print(f"server RSS {baseline / MIB:.1f} MiB before the attacks, +{grown / MIB:.1f} MiB after")
        assert grown < 32 * MIB, f"the server grew by {grown / MIB:.0f} MiB"
    finally:
        assert server.stop() == 0


# --- 2. fds and connections ----------------------------------------------------------------


def test_running_out_of_fds_is_logged_and_survived_once_the_attackers_leave():
    limit = 64
    lower = lambda: resource.setrlimit(  # noqa: E731
        resource.RLIMIT_NOFILE, (limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    server = Server("CartPole-v1", 2, "127.0.0.1:0", preexec_fn=lower)
    try:
        in_use = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
        flood = [server.raw_socket() for _ in range(limit - in_use + 8)]  # silent: each holds an fd
        server.wait_for_log("out of file descriptors")
        for sock in flood:
            sock.close()
        assert served(server.address), "no new client was served after the attackers left"
        server.wait_for_log("accepting connections")
    finally:
        assert server.stop() == 0


def test_connections_over_the_limit_are_refused_and_served_again_once_some_leave():
    server = Server("CartPole-v1", 2, "127.0.0.1:0", "--max-connections", "2")
    try:
        attackers = [server.raw_socket() for _ in range(2)]
        with pytest.raises(RuntimeError, match=r"connection limit \(2 connections\)"):
            EnvClient(server.address, timeout=DEADLINE_S)
        server.wait_for_log("at the connection limit (2")
        for sock in attackers:
            sock.close()
        assert wait_for(lambda: served(server.address), timeout=DEADLINE_S)
        server.wait_for_log("below the connection limit again")
    finally:
        assert server.stop() == 0


# --- 3. deadlines --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Short deadlines; a unix socket, whose small send buffer a client fills quickly by not reading."""
    path = tmp_path_factory.mktemp("strict") / "env.sock"
    s = Server("CartPole-v1", K, f"unix:{path}", "--handshake-timeout", "0.3", "--idle-timeout", "0.5",
               "--send-timeout", "0.3")
    yield s
    assert s.stop() == 0


def test_silent_and_slow_clients_are_cut_off_at_the_handshake_deadline(strict):
    silent = strict.raw_socket()
    slow = strict.raw_socket()
    hello = frame(HELLO)
    for i in range(len(hello) - 1):  # one byte per 0.05 s: the header would take 1 s
        try:
            slow.send(hello[i:i + 1])
        except OSError:  # the server has already closed it
            break
        threading.Event().wait(0.05)
    for sock in (silent, slow):
        assert "handshake not complete within the handshake timeout (0.3 s)" in error_text(sock)
        assert sock.recv(1) == b""
    strict.wait_for_log("handshake not complete")
    assert served(strict.address)


def test_an_idle_client_is_cut_off(strict):
    idle = strict.raw_socket()
    handshake(idle)
    assert "no complete request within the idle timeout (0.5 s)" in error_text(idle)
    assert idle.recv(1) == b""


def test_a_client_that_never_reads_its_replies_is_dropped_and_others_carry_on(strict):
    greedy = strict.raw_socket()
    handshake(greedy)
    step = frame(STEP, {"action": np.zeros(K, np.int64)})
    with pytest.raises(OSError):  # the server drops it while it is still sending
        for _ in range(10**6):
            greedy.sendall(step)
    strict.wait_for_log("a reply not sent within the send timeout (0.3 s)")
    assert served(strict.address)


# --- 3b. RESET and ATTR (wire version 3) ------------------------------------------------------


def text(value: str) -> np.ndarray:
    return np.frombuffer(value.encode(), np.uint8)


def test_reset_and_attr_frames_over_their_limits_are_refused_from_the_header():
    """csrc/net/wire.h "Limits": RESET 4 KiB + 9 B per env + 64 KiB, ATTR 4 KiB + 64 KiB per env."""
    server = Server("CartPole-v1", K)
    try:
        for type_, limit in ((RESET, 4096 + 9 * K + 65536), (ATTR, 4096 + K * 65536)):
            with server.raw_socket() as sock:
                handshake(sock)
                sock.sendall(header(type_, limit + 1) + b"\0")
                assert "exceeds the maximum frame size" in error_text(sock)
        assert served(server.address)
    finally:
        assert server.stop() == 0


ILL_TYPED = [
    (RESET, {"seed": np.zeros(K + 1, np.int64)}, "RESET 'seed' must be int64 [] or [4]"),
    (RESET, {"seed": np.zeros((), np.int32)}, "RESET 'seed' must be int64"),
    (RESET, {"seeded": np.ones(K, np.bool_)}, "RESET 'seeded' must be bool [4] next to"),
    (RESET, {"bogus": np.zeros(1)}, "RESET may hold only 'seed', 'seeded' and 'option/...'"),
    (RESET, {"option/low": np.zeros(())}, "no ':<kind>' suffix"),
    (ATTR, {"name": text("gravity")}, "ATTR needs 'op' as uint8[n]"),
    (ATTR, {"op": text("get"), "name": text("gravity"), "evil": np.zeros(1)}, "ATTR may hold only"),
    (ATTR, {"op": text("pickle"), "name": text("gravity")}, "ATTR op must be one of"),
    (ATTR, {"op": text("get"), "name": text("np_random")}, "which the env server wire cannot carry"),
]


def test_ill_typed_reset_and_attr_requests_get_an_error_and_the_connection_stays():
    server = Server("CartPole-v1", K)
    try:
        with server.raw_socket() as sock:
            handshake(sock)
            for type_, arrays, message in ILL_TYPED:
                sock.sendall(frame(type_, arrays))
                assert message in error_text(sock), message
            sock.sendall(frame(ATTR, {"op": text("get"), "name": text("gravity")}))
            type_, arrays = read_frame(sock)
            assert type_ == ATTR_RESULT and sorted(arrays) == [f"result/{i}:p" for i in range(K)]
            assert arrays["result/0:p"].item() == 9.8
            sock.sendall(frame(RESET, {"seed": np.arange(K, dtype=np.int64),
                                       "seeded": np.array([True, False] * (K // 2))}))
            type_, arrays = read_frame(sock)
            assert type_ == STEP_RESULT and arrays["obs"].shape == (K, 4)
    finally:
        assert server.stop() == 0


# --- 4. log injection ----------------------------------------------------------------------


def test_client_chosen_names_are_logged_escaped_on_one_line():
    server = Server("CartPole-v1", K)
    try:
        name = "evil\nbeast env server: forged line\x1b[31m".encode()
        array = struct.pack("<H", len(name)) + name + struct.pack("<BB", 42, 0) + struct.pack("<Q", 0)
        with server.raw_socket() as sock:
            handshake(sock)
            sock.sendall(frame(RESET, body=array_body(array)))
            assert "unknown dtype code 42" in error_text(sock)
        line = server.wait_for_log("unknown dtype code 42")
        assert r"'evil\x0abeast env server: forged line\x1b[31m'" in line
        assert not any(text.startswith("beast env server: forged") for text in server.stderr)
        assert not any("\x1b" in text for text in server.stderr)
    finally:
        assert server.stop() == 0


# --- 5. authentication ---------------------------------------------------------------------

RFC_4231 = [  # (key, data, HMAC-SHA-256), test cases 1-7; case 5 is truncated to 128 bits
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (bytes(range(1, 26)), b"\xcd" * 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\x0c" * 20, b"Test With Truncation", "a3b6167473100ee06e0c796c2955552b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger than block-size data."
     b" The key needs to be hashed before being used by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]


@pytest.mark.parametrize("case", range(1, 8))
def test_hmac_sha256_matches_rfc_4231(case):
    key, data, want = RFC_4231[case - 1]
    assert hmac_sha256(key, data).hex()[:len(want)] == want


def test_hmac_sha256_matches_pythons_around_block_boundaries():
    rng = np.random.default_rng(0)
    for size in [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000]:
        key, data = rng.bytes(size % 97), rng.bytes(size)
        assert hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest(), size


def test_a_non_loopback_address_without_a_token_refuses_to_start():
    environ = beast_env()
    environ.pop("BEAST_AUTH_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "beast.poly.env_server", "--env", "CartPole-v1",
                           "--address", "0.0.0.0:0"], cwd=REPO, env=environ, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and "without an auth token" in proc.stderr
    with pytest.raises(ValueError, match="without an auth token"):
        EnvServer("[::]:0", lambda: None)


@pytest.fixture(scope="module")
def guarded():
    """A server on every interface, with a token from the environment, hosting envs that fail."""
    s = Server(FAULTY, 2, "0.0.0.0:0", env={"BEAST_AUTH_TOKEN": TOKEN})
    s.local = "127.0.0.1:" + s.address.rsplit(":", 1)[1]
    yield s
    assert s.stop() == 0


def test_wrong_or_missing_tokens_are_refused_without_disturbing_others(guarded):
    good = EnvClient(guarded.local, timeout=DEADLINE_S, auth_token=TOKEN)
    good.reset(seed=0)
    with pytest.raises(PermissionError, match="authentication failed: wrong auth token") as wrong:
        EnvClient(guarded.local, timeout=DEADLINE_S, auth_token="not the token")
    with pytest.raises(PermissionError, match="sent no token.*this client has no token") as missing:
        EnvClient(guarded.local, timeout=DEADLINE_S)
    guarded.wait_for_log("authentication failed (wrong auth token)")
    for refused in (wrong, missing):
        assert "Traceback" not in str(refused.value)
    with pytest.raises(RuntimeError, match="faulty env") as failed:  # Faulty-v0 raises after 50 steps
        for _ in range(100):
            good.step(np.zeros(2, np.int64))
    assert "Traceback (most recent call last)" in str(failed.value)  # only for an authenticated client
    good.close()


def test_raw_challenge_response_matches_the_documented_format(guarded):
    host, port = guarded.local.rsplit(":", 1)
    macs = []
    for _ in range(2):
        with socket.create_connection((host, int(port)), timeout=DEADLINE_S) as sock:
            sock.sendall(frame(HELLO))
            type_, challenge = read_frame(sock)
            assert type_ == CHALLENGE and challenge["nonce"].dtype == np.uint8
            nonce = challenge["nonce"].tobytes()
            assert len(nonce) == 32
            if macs:  # a MAC seen on the wire is worthless for the next connection
                sock.sendall(frame(AUTH, {"mac": np.frombuffer(macs[0], np.uint8)}))
                assert "wrong auth token" in error_text(sock)
            else:
                macs.append(hmac.new(TOKEN.encode(), AUTH_CONTEXT + nonce, hashlib.sha256).digest())
                sock.sendall(frame(AUTH, {"mac": np.frombuffer(macs[0], np.uint8)}))
                assert read_frame(sock)[0] == SPEC


def test_the_client_proves_the_token_without_sending_it():
    listener = socket.create_server(("127.0.0.1", 0))
    nonce, received = bytes(range(32)), bytearray()

    def fake_server():
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(DEADLINE_S)
            received.extend(conn.recv(24))  # HELLO
            conn.sendall(frame(CHALLENGE, {"nonce": np.frombuffer(nonce, np.uint8)}))
            while len(received) < 24 + 20 + 4 + 2 + 3 + 2 + 8 + 8 + 32:  # AUTH {mac: uint8[32]}
                received.extend(conn.recv(4096))
            conn.sendall(frame(ERROR, {"message": np.frombuffer(b"authentication failed: test", np.uint8)}))

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    with pytest.raises(PermissionError, match="authentication failed: test"):
        EnvClient(f"127.0.0.1:{listener.getsockname()[1]}", timeout=DEADLINE_S, auth_token=TOKEN)
    thread.join(DEADLINE_S)
    listener.close()
    assert TOKEN.encode() not in received
    assert received.endswith(hmac.new(TOKEN.encode(), AUTH_CONTEXT + nonce, hashlib.sha256).digest())


def test_remote_vector_env_and_actor_pool_pass_the_token(guarded, monkeypatch):
    from beast.poly import ActorPool, BatchingQueue, DynamicBatcher
    from beast.poly.remote_env import RemoteVectorEnv
    from tests.poly.test_actor_pool import Inference, agent_spec

    remote = RemoteVectorEnv([guarded.local], auth_token=TOKEN)
    assert remote.reset(seed=0)[0].shape == (2, 4)
    remote.close()
    monkeypatch.setenv("BEAST_AUTH_TOKEN", TOKEN)
    remote = RemoteVectorEnv([guarded.local])  # the token from the environment
    assert remote.reset(seed=0)[0].shape == (2, 4)
    remote.close()

    for token, works in ((TOKEN, True), ("not the token", False)):
        queue, batcher = BatchingQueue(4, batch_dim=1, stack=False), DynamicBatcher()
        inference = Inference(batcher, 2)
        pool = ActorPool(3, queue, batcher, [guarded.local], seed=0, agent_spec=agent_spec(2),
                         action_key="action", auth_token=token)
        pool.start()
        try:
            if works:
                assert queue.dequeue(1, 1, timeout=DEADLINE_S)["obs"].shape == (4, 2, 4)
            else:
                assert wait_for(lambda: pool.error is not None, timeout=DEADLINE_S)
                assert "authentication failed: wrong auth token" in pool.error
        finally:
            batcher.close()
            pool.close()
            queue.close()
            inference.thread.join(DEADLINE_S)


def test_the_launcher_hands_its_token_to_the_servers_it_starts_and_to_the_pool(monkeypatch):
    from beast.config import Config, EnvConfig, ModelConfig, PolyConfig, RunConfig
    from beast.envs import make_vector_env
    from beast.models import build_model
    from beast.poly.sources import PolySource
    from tests.conftest import COUNTING

    monkeypatch.setenv("PYTHONPATH", beast_env()["PYTHONPATH"])  # the server imports tests.*
    monkeypatch.setenv("BEAST_AUTH_TOKEN", TOKEN)
    config = Config(env=EnvConfig(env=COUNTING, num_envs=2), run=RunConfig(num_actors=1, unroll_length=3),
                    poly=PolyConfig(num_servers=1))
    envs = make_vector_env(COUNTING, 2)
    model = build_model(envs.single_observation_space, envs.single_action_space,
                        ModelConfig(hidden_sizes=(8,)))
    source = PolySource(config, model, envs.single_observation_space, envs.single_action_space,
                        generation=0, log=lambda text: None)
    try:
        from beast.learner import Learner
        from beast.objectives import build_objective

        source.publish_weights(Learner(model, build_objective(config.loss, model),
                                       config.optim, 10**6))
        assert wait_for(lambda: source.next_batch(timeout=0.5) is not None, timeout=30)
        with pytest.raises(PermissionError, match="sent no token"):  # the server asks for it
            EnvClient(source.servers.addresses[0], timeout=DEADLINE_S)
    finally:
        source.close()
