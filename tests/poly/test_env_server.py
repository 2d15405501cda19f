"""Env server and client (csrc/net) over real processes and sockets.

The server runs as `python -m beast.poly.env_server` in a subprocess on 127.0.0.1 port 0.
Trajectories are checked exactly against a local `make_vector_env` stepped the same way. The
malformed-frame tests speak the wire format through an encoder written here from the format
documented in csrc/net/wire.h, so they also check that the documentation matches the code.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from beast.envs.make import make_vector_env
from beast.poly import EnvClient
from tests.conftest import REPO, beast_env, wait_for

K = 4
DEADLINE_S = 5.0
FAULTY = "tests.envs.counting_env:Faulty-v0"

# --- the wire format, from csrc/net/wire.h --------------------------------------------

MAGIC, VERSION = b"BNET", 3
HELLO, SPEC, RESET, STEP, STEP_RESULT, ERROR, CLOSE, CHALLENGE, AUTH, ATTR, ATTR_RESULT = range(1, 12)
CODES = {np.dtype(t): c for c, t in enumerate(
    [np.bool_, np.int8, np.uint8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64])}
DTYPES = {c: t for t, c in CODES.items()}


def encode_array(name: str, a: np.ndarray) -> bytes:
    a = np.asarray(a, order="C")  # (np.ascontiguousarray would make a scalar 1-d)
    raw = name.encode()
    head = struct.pack("<H", len(raw)) + raw + struct.pack("<BB", CODES[a.dtype], a.ndim)
    data = a.astype(a.dtype.newbyteorder("<")).tobytes()
    return head + struct.pack(f"<{a.ndim}Q", *a.shape) + struct.pack("<Q", a.nbytes) + data


def frame(type_: int, arrays: dict[str, np.ndarray] | None = None, *, body: bytes | None = None,
          magic: bytes = MAGIC, version: int = VERSION, length: int | None = None) -> bytes:
    """A frame; `body` replaces the encoded arrays, `length` the true payload length."""
    arrays = arrays or {}
    if body is None:
        body = struct.pack("<I", len(arrays)) + b"".join(encode_array(n, a) for n, a in arrays.items())
    return magic + struct.pack("<IIQ", version, type_, len(body) if length is None else length) + body


def recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {n} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> tuple[int, dict[str, np.ndarray]]:
    magic, version, type_, length = struct.unpack("<4sIIQ", recv_exact(sock, 20))
    assert (magic, version) == (MAGIC, VERSION)
    payload, pos, arrays = recv_exact(sock, length), 4, {}
    for _ in range(struct.unpack_from("<I", payload)[0]):
        (name_len,) = struct.unpack_from("<H", payload, pos)
        name = payload[pos + 2:pos + 2 + name_len].decode()
        pos += 2 + name_len
        code, ndim = struct.unpack_from("<BB", payload, pos)
        dims = struct.unpack_from(f"<{ndim}Q", payload, pos + 2)
        (nbytes,) = struct.unpack_from("<Q", payload, pos + 2 + 8 * ndim)
        pos += 10 + 8 * ndim
        arrays[name] = np.frombuffer(payload[pos:pos + nbytes], DTYPES[code]).reshape(dims)
        pos += nbytes
    assert pos == len(payload), "trailing bytes"
    return type_, arrays


# --- servers as processes ---------------------------------------------------------------


class Server:
    """`python -m beast.poly.env_server` in a subprocess; stderr is collected as it comes.

    `flags` go to the server's command line, `env` into its environment (which otherwise has no
    BEAST_AUTH_TOKEN), `preexec_fn` runs in the child before it starts (e.g. lowering a limit).
    """

    def __init__(self, env_id: str, num_envs: int, address: str = "127.0.0.1:0", *flags: str,
                 env: dict[str, str] | None = None, preexec_fn=None):
        environ = beast_env()
        environ.pop("BEAST_AUTH_TOKEN", None)
        environ.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "beast.poly.env_server", "--env", env_id, "--num-envs", str(num_envs),
             "--address", address, *flags],
            cwd=REPO, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=preexec_fn)
        self.address = self.proc.stdout.readline().strip()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: self.stderr.extend(self.proc.stderr), daemon=True).start()
        assert self.address, f"server did not start: {self.proc.wait(DEADLINE_S)}"

    def wait_for_log(self, text: str) -> str:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            for line in list(self.stderr):
                if text in line:
                    return line
            time.sleep(0.02)
        raise AssertionError(f"server stderr never said {text!r}: {self.stderr}")

    def raw_socket(self) -> socket.socket:
        if self.address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(DEADLINE_S)
            sock.connect(self.address[len("unix:"):])
            return sock
        host, port = self.address.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=DEADLINE_S)
        return sock

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(DEADLINE_S)


@pytest.fixture(scope="module")
def server():
    s = Server("CartPole-v1", K)
    yield s
    assert s.stop() == 0


class Mirror:
    """A client and a local vector env stepped with the same actions; every result must match."""

    def __init__(self, address: str, seed: int = 7):
        self.client = EnvClient(address, timeout=DEADLINE_S)
        self.local = make_vector_env("CartPole-v1", K, per_env=True)  # as the server makes them
        obs, _ = self.local.reset(seed=seed)
        np.testing.assert_array_equal(self.client.reset(seed=seed)["obs"], obs)
        self.t = 0

    def step(self, n: int = 1) -> int:
        """Steps n times; returns how many envs ended an episode."""
        ends = 0
        for _ in range(n):
            actions = np.array([(self.t + i) % 2 if i % 2 else (self.t // 3) % 2 for i in range(K)])
            got = self.client.step(actions)
            obs, reward, terminated, truncated, _ = self.local.step(actions)
            for key, want in dict(obs=obs, reward=reward, terminated=terminated, truncated=truncated).items():
                assert got[key].dtype == want.dtype and got[key].shape == want.shape, key
                np.testing.assert_array_equal(got[key], want, err_msg=f"{key} at step {self.t}")
            ends += int(np.sum(terminated | truncated))
            self.t += 1
        return ends


# --- behaviour --------------------------------------------------------------------------


def test_spec_and_trajectory_match_a_local_vector_env_across_episode_ends(server):
    mirror = Mirror(server.address)
    c = mirror.client
    assert (c.num_envs, c.num_actions, c.observation_shape, c.action_shape) == (K, 2, (4,), ())
    assert c.observation_dtype == np.float32 and c.action_dtype == np.int64
    assert mirror.step(120) > 0, "no episode ended: the autoreset step was not covered"
    c.close()
    assert c.closed
    with pytest.raises(ConnectionError, match="closed"):
        c.step(np.zeros(K, np.int64))


def test_actions_that_do_not_fit_the_spec_are_refused_before_sending(server):
    mirror = Mirror(server.address)
    with pytest.raises(ValueError, match=r"int64 \[4\]"):
        mirror.client.step(np.zeros(K + 1, np.int64))
    with pytest.raises(TypeError, match="cannot be cast"):
        mirror.client.step(np.zeros(K, np.float32))
    mirror.client.step(np.zeros(K, np.int32))  # a safe cast is fine
    mirror.local.step(np.zeros(K, np.int64))
    mirror.step(3)


def test_raw_session_matches_the_documented_format(server):
    with server.raw_socket() as sock:
        sock.sendall(frame(HELLO))
        type_, spec = read_frame(sock)
        assert type_ == SPEC
        assert spec["observation_shape"].tolist() == [4] and DTYPES[int(spec["observation_dtype"])] == np.float32
        assert spec["action_shape"].tolist() == [] and DTYPES[int(spec["action_dtype"])] == np.int64
        assert int(spec["num_actions"]) == 2 and int(spec["num_envs"]) == K
        local = make_vector_env("CartPole-v1", K, per_env=True)
        sock.sendall(frame(RESET, {"seed": np.array(3, np.int64)}))
        type_, got = read_frame(sock)
        assert type_ == STEP_RESULT
        np.testing.assert_array_equal(got["obs"], local.reset(seed=3)[0])
        action = np.array([0, 1, 1, 0], np.int64)
        sock.sendall(frame(STEP, {"action": action}))
        type_, got = read_frame(sock)
        obs, reward, terminated, truncated, _ = local.step(action)
        assert type_ == STEP_RESULT and sorted(got) == ["obs", "reward", "terminated", "truncated"]
        np.testing.assert_array_equal(got["obs"], obs)
        np.testing.assert_array_equal(got["reward"], reward)
        sock.sendall(frame(STEP, {"action": np.zeros(3, np.int64)}))  # well-formed, wrong shape
        type_, got = read_frame(sock)
        assert type_ == ERROR and "must be int64 [4]" in got["message"].tobytes().decode()
        sock.sendall(frame(CLOSE))
        assert sock.recv(1) == b""


def array_body(*arrays: bytes, count: int | None = None) -> bytes:
    return struct.pack("<I", len(arrays) if count is None else count) + b"".join(arrays)


def tampered_array(code: int = 7, dims=(2, 2), nbytes: int = 16, data: bytes = b"\0" * 16) -> bytes:
    return (struct.pack("<H", 1) + b"x" + struct.pack("<BB", code, len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
            + struct.pack("<Q", nbytes) + data)


MALFORMED = {
    "short header": (MAGIC + b"\1\0", "while reading a frame header (6 of 20 bytes"),
    "wrong magic": (frame(HELLO, magic=b"HTTP"), "bad magic bytes 48 54 54 50"),
    "wrong version": (frame(HELLO, version=1), "unsupported protocol version 1"),
    "unknown frame type": (frame(99), "unknown frame type 99"),
    "oversized length": (frame(STEP, length=1 << 40), "exceeds the maximum frame size"),
    "too many arrays": (frame(RESET, body=struct.pack("<I", 1 << 30)), "array count 1073741824 exceeds the limit 64"),
    "bad dtype code": (frame(RESET, body=array_body(tampered_array(code=42))), "unknown dtype code 42"),
    "shape not matching the bytes": (frame(RESET, body=array_body(tampered_array(nbytes=12, data=b"\0" * 12))),
                                     "needs 16 bytes, but the byte length says 12"),
    "too many dims": (frame(RESET, body=array_body(tampered_array(dims=(1,) * 17, nbytes=4, data=b"\0" * 4))),
                      "ndim 17 exceeds the limit 16"),
    "array past the payload": (frame(RESET, body=array_body(count=2)), "runs past the end of the payload"),
    "trailing bytes": (frame(RESET, body=array_body() + b"xyz"), "3 trailing bytes"),
    "step before hello": (frame(STEP, {"action": np.zeros(K, np.int64)}), "expected HELLO as the first frame"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_frame_closes_only_that_connection(server, case):
    data, reason = MALFORMED[case]
    healthy = Mirror(server.address)
    healthy.step(2)
    with server.raw_socket() as sock:
        if case not in ("short header", "step before hello"):
            sock.sendall(frame(HELLO))
            assert read_frame(sock)[0] == SPEC
        sock.sendall(data)
        if case == "short header":
            sock.shutdown(socket.SHUT_WR)
        else:
            type_, got = read_frame(sock)  # the server says why before closing
            assert type_ == ERROR and reason in got["message"].tobytes().decode()
        assert sock.recv(1) == b"", "connection left open"
    assert "closing connection" in server.wait_for_log(reason) or case == "short header"
    healthy.step(5)
    assert server.proc.poll() is None
    healthy.client.close()


def test_env_exception_reaches_its_client_with_traceback_and_others_keep_stepping():
    faulty = Server(FAULTY, 2)
    try:
        victim = EnvClient(faulty.address, timeout=DEADLINE_S)
        other = EnvClient(faulty.address, timeout=DEADLINE_S)  # its own envs, with their own step counts
        victim.reset(seed=0)
        other.reset(seed=0)
        actions = np.zeros(2, np.int64)
        for _ in range(50):  # Faulty-v0 raises after 50 env steps (autoreset steps do not count)
            victim.step(actions)
        with pytest.raises(RuntimeError) as info:
            for _ in range(50):
                victim.step(actions)
        assert "faulty env" in str(info.value) and "Traceback (most recent call last)" in str(info.value)
        assert "counting_env.py" in str(info.value)
        for _ in range(20):
            assert other.step(actions)["obs"].shape == (2, 4)
        with pytest.raises(RuntimeError, match="faulty env"):  # the victim's connection is still up
            victim.step(actions)
    finally:
        assert faulty.stop() == 0


def process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_killed_server_fails_a_blocked_and_the_next_call_promptly():
    doomed = Server("CartPole-v1", 2)
    client = EnvClient(doomed.address, timeout=60.0)  # the long timeout must not be what ends the wait
    client.reset(seed=0)
    doomed.proc.send_signal(signal.SIGSTOP)  # the next step blocks, waiting for a reply
    stopped = wait_for(lambda: process_state(doomed.proc.pid) == "T", timeout=DEADLINE_S)
    assert stopped, "SIGSTOP did not take effect"  # (delivery is asynchronous)
    outcome = {}

    def blocked_step():
        start = time.monotonic()
        try:
            client.step(np.zeros(2, np.int64))
        except Exception as e:  # noqa: BLE001 - checked below
            outcome["error"] = e
        outcome["seconds"] = time.monotonic() - start

    thread = threading.Thread(target=blocked_step, daemon=True)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive(), outcome
    doomed.proc.kill()
    doomed.proc.wait(DEADLINE_S)
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), "the blocked call hung after the server was killed"
    assert isinstance(outcome["error"], ConnectionError) and outcome["seconds"] < 0.2 + DEADLINE_S
    start = time.monotonic()
    with pytest.raises(ConnectionError):
        client.step(np.zeros(2, np.int64))
    with pytest.raises(ConnectionError):
        EnvClient(doomed.address, timeout=60.0)  # refused at once
    assert time.monotonic() - start < DEADLINE_S


def test_unix_socket_and_clean_sigterm(tmp_path):
    path = tmp_path / "env.sock"
    unix = Server("CartPole-v1", K, address=f"unix:{path}")
    assert unix.address == f"unix:{path}"
    mirror = Mirror(unix.address, seed=11)
    mirror.step(30)
    assert unix.stop() == 0  # SIGTERM with a client still connected
    assert not os.path.exists(path), "socket file left behind"
    with pytest.raises(ConnectionError):
        mirror.client.step(np.zeros(K, np.int64))


def test_bad_address_and_unknown_env_fail_clearly():
    with pytest.raises(ConnectionError, match="bad address"):
        EnvClient("nowhere", timeout=1.0)
    proc = subprocess.run([sys.executable, "-m", "beast.poly.env_server", "--env", "NoSuchEnv-v0"],
                          cwd=REPO, env=beast_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "unknown environment id" in proc.stderr
