"""The actor pool survives lost env servers (csrc/actor/actor_pool.h), without Ray.

Real env-server processes are killed, stopped (SIGSTOP) and restarted on their port; the pool
must drop only the unroll it was filling, reconnect, and reset the new session with its fresh
seed, while every completed unroll reaches the queue. Waits are bounded only to turn a hang into
a failure; nothing asserts on speed.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from beast.poly import EnvClient
from beast.poly.remote_env import RemoteVectorEnv
from tests.conftest import COUNTING, FAST, start_cli
from tests.poly.test_actor_pool import JOIN_S, Pipeline, wait_for_error
from tests.poly.test_env_server import Server

K = 2
WAIT_S = 20.0  # bound on "it reconnected" (a restarted server imports gymnasium first)


def stop(proc) -> None:
    """SIGSTOP `proc` and wait until every one of its threads is stopped (the signal is
    delivered asynchronously: a request sent at once could still be answered)."""
    proc.send_signal(signal.SIGSTOP)

    def stopped() -> bool:
        try:
            return all((task / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
                       for task in Path(f"/proc/{proc.pid}/task").iterdir())
        except FileNotFoundError:  # a thread ended meanwhile: look again
            return False

    assert wait_until(stopped), "the server did not stop"


def wait_until(condition, timeout: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def cartpole_reset_obs(seed: int) -> np.ndarray:
    """What a server's K CartPoles show after RESET(seed): env j reset with seed + j."""
    return np.stack([gym.make("CartPole-v1").reset(seed=seed + j)[0] for j in range(K)])


def test_a_killed_server_restarted_on_its_port_is_reconnected_and_no_completed_unroll_is_lost():
    server = Server("CartPole-v1", K)
    address = server.address
    p = Pipeline([address], num_actions=2, capacity=10_000)
    try:
        assert wait_until(lambda: p.pool.num_unrolls >= 3)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(JOIN_S)
        before = p.pool.num_unrolls
        server = Server("CartPole-v1", K, address)  # the same port, as a supervisor would
        assert wait_until(lambda: p.pool.num_reconnects == 1 and p.pool.num_unrolls >= before + 3)
        assert p.pool.error is None and p.pool.num_connected == 1
        events = p.pool.drain_events()
        assert any(f"connection 0 ({address}) lost: ConnectionError" in e for e in events), events
        assert any(f"connection 0 reconnected to {address}" in e for e in events), events
        assert p.pool.drain_events() == []  # drained
        assert p.pool.num_dropped_unrolls <= 1
    finally:
        p.close()
        server.proc.kill()
    unrolls = []
    while len(p.queue):
        unrolls.append(p.queue.dequeue(1, 1, timeout=JOIN_S))
    assert len(unrolls) == p.pool.num_unrolls  # every completed unroll was queued

    # Session 0 is one chain (each unroll starts where the last ended) until the first unroll of
    # session 1: its entry 0 is a fresh reset with seed (1 * 1 + 0) * K, sums restarted.
    fresh = cartpole_reset_obs(K)
    starts = [i for i, u in enumerate(unrolls)
              if np.array_equal(u["obs"][0], fresh) and not u["episode_step"][0].any()
              and not u["episode_return"][0].any()]
    assert len(starts) == 1 and starts[0] >= 3, starts
    for i in range(1, len(unrolls)):
        if i != starts[0]:
            assert np.array_equal(unrolls[i]["obs"][0], unrolls[i - 1]["obs"][-1]), i
    assert not np.array_equal(unrolls[starts[0]]["obs"][0], unrolls[starts[0] - 1]["obs"][-1])


def test_replace_address_moves_the_connection_to_a_replacement_server():
    first, replacement = Server(COUNTING, K), Server(COUNTING, K)
    p = Pipeline([first.address], capacity=10_000)
    try:
        assert wait_until(lambda: p.pool.num_unrolls >= 2)
        first.proc.kill()
        first.proc.wait(JOIN_S)
        assert p.pool.replace_address("127.0.0.1:1", replacement.address) == 0  # no such connection
        assert p.pool.replace_address(first.address, replacement.address) == 1
        assert p.pool.addresses == [replacement.address]
        assert wait_until(lambda: p.pool.num_reconnects == 1)
        steps = p.pool.num_steps
        assert wait_until(lambda: p.pool.num_steps > steps + 10 * K)
        events = "\n".join(p.pool.drain_events())
        assert f"{first.address} replaced by {replacement.address}" in events
        assert f"reconnected to {replacement.address}" in events
        with pytest.raises(ConnectionError, match="port"):
            p.pool.replace_address(replacement.address, "127.0.0.1:notaport")
    finally:
        p.close()
        replacement.proc.kill()


def test_a_stopped_server_is_detected_by_the_step_timeout_and_reconnected_once_it_resumes():
    server = Server(COUNTING, K)
    step_timeout = 1.0
    p = Pipeline([server.address], capacity=10_000, connect_timeout=step_timeout)
    try:
        assert wait_until(lambda: p.pool.num_unrolls >= 2)
        stop(server.proc)
        events: list[str] = []
        # Detected by the step timeout: the loss is a TimeoutError, seen within a bound that
        # leaves only the backoff and scheduling slack beyond it.
        assert wait_until(lambda: events.extend(p.pool.drain_events()) or events,
                          timeout=step_timeout + 5.0), "a stopped server was never noticed"
        assert "lost: TimeoutError" in events[0], events
        assert p.pool.error is None and p.pool.num_connected == 0
        server.proc.send_signal(signal.SIGCONT)
        assert wait_until(lambda: p.pool.num_reconnects == 1)
        steps = p.pool.num_steps
        assert wait_until(lambda: p.pool.num_steps > steps)
    finally:
        server.proc.send_signal(signal.SIGCONT)
        p.close()
        server.proc.kill()


def test_no_server_reachable_for_the_unreachable_timeout_fails_with_one_clear_error():
    server = Server(COUNTING, K)
    p = Pipeline([server.address], capacity=10_000, unreachable_timeout=1.0)
    try:
        assert wait_until(lambda: p.pool.num_unrolls >= 1)
        server.proc.kill()
        server.proc.wait(JOIN_S)
        message = wait_for_error(p.pool)
        assert f"({server.address}): ConnectionError: no env server has been reachable" in message
        assert "unreachable_timeout 1.0 s" in message and "\n" not in message
        assert wait_until(lambda: not p.pool.running, JOIN_S)
    finally:
        p.close()


def test_one_lost_server_of_two_leaves_the_other_stepping():
    lost, kept = Server(COUNTING, K), Server(COUNTING, K)
    p = Pipeline([lost.address, kept.address], capacity=10_000, unreachable_timeout=1.0)
    try:
        assert wait_until(lambda: p.pool.num_connected == 2 and p.pool.num_unrolls >= 2)
        lost.proc.kill()
        lost.proc.wait(JOIN_S)
        assert wait_until(lambda: p.pool.num_connected == 1)
        time.sleep(2.0)  # past unreachable_timeout: one server up is enough
        steps = p.pool.num_steps
        assert wait_until(lambda: p.pool.num_steps > steps + 10 * K)
        assert p.pool.error is None
    finally:
        p.close()
        kept.proc.kill()


def test_a_first_connect_that_fails_fails_the_pool_at_once():
    server = Server(COUNTING, K)
    server.proc.kill()
    server.proc.wait(JOIN_S)
    with Pipeline([server.address]) as p:  # a wrong address is a mistake to report, not wait out
        assert "ConnectionError" in wait_for_error(p.pool)


@pytest.mark.parametrize("kind", ["EnvClient", "RemoteVectorEnv"])
def test_close_interrupts_a_step_blocked_on_a_stopped_server(kind):
    server = Server(COUNTING, K)
    # No timeout: only close() can end the step.
    envs = (EnvClient(server.address, timeout=None) if kind == "EnvClient" else
            RemoteVectorEnv([server.address], timeout=None))
    envs.reset(seed=0)
    stop(server.proc)
    errors: list[BaseException] = []

    def step() -> None:
        try:
            envs.step(np.zeros(K, np.int64))
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=step)
    try:
        thread.start()
        thread.join(0.3)
        assert thread.is_alive(), "the step should be blocked on the stopped server"
        envs.close()
        thread.join(JOIN_S)
        assert not thread.is_alive() and len(errors) == 1
        assert isinstance(errors[0], ConnectionError) and "aborted" in str(errors[0]), errors
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.proc.kill()


def test_pool_close_interrupts_threads_blocked_on_a_stopped_server():
    server = Server(COUNTING, K)
    p = Pipeline([server.address], capacity=10_000, connect_timeout=None)
    try:
        assert wait_until(lambda: p.pool.num_unrolls >= 1)
        stop(server.proc)
        time.sleep(0.3)  # a step is now blocked, with no timeout
        closer = threading.Thread(target=p.pool.close)
        closer.start()
        closer.join(JOIN_S)
        assert not closer.is_alive() and not p.pool.running and p.pool.error is None
    finally:
        server.proc.send_signal(signal.SIGCONT)
        p.close()
        server.proc.kill()


class LiveRun:
    """`python -m beast.poly FAST... *args` with its stderr collected line by line as it runs."""

    def __init__(self, *args: str) -> None:
        self.process = start_cli("beast.poly", *FAST, *args)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.process.stderr),
                         daemon=True).start()

    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 60.0) -> str:
        assert wait_until(lambda: any(text in line for line in self.lines), timeout), (
            f"the run never said {text!r}:\n{self.stderr()[-3000:]}")
        return next(line for line in self.lines if text in line)

    @staticmethod
    def steps(run_dir: Path) -> float:
        """env_steps of the last row of logs.csv (0 before the first)."""
        try:
            rows = list(csv.DictReader((run_dir / "logs.csv").open()))
        except FileNotFoundError:
            return 0.0
        return float(rows[-1]["env_steps"]) if rows else 0.0

    def wait_for_steps_past(self, run_dir: Path, steps: float) -> None:
        assert wait_until(lambda: self.steps(run_dir) > steps, 60.0), (
            f"env_steps stayed at {steps}:\n{self.stderr()[-3000:]}")

    def interrupt(self) -> int:
        """Ctrl-C to a run that must still be going; its exit code."""
        assert self.process.poll() is None, self.stderr()[-3000:]
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=30)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def test_the_launcher_reconnects_to_a_given_server_that_was_killed_and_restarted(run_dir):
    server = Server("CartPole-v1", 8)
    run = LiveRun("--total-steps", "100000000", "--server-addresses", server.address,
                  "--savedir", str(run_dir.parent), "--run-name", run_dir.name)
    try:
        run.wait_for_steps_past(run_dir, 0)
        server.proc.kill()
        server.proc.wait(JOIN_S)
        run.wait_for_line("lost: ConnectionError")
        steps = run.steps(run_dir)
        server = Server("CartPole-v1", 8, server.address)  # restarted on its port
        run.wait_for_line(f"reconnected to {server.address}")
        run.wait_for_steps_past(run_dir, steps)
        os.killpg(run.process.pid, signal.SIGINT)
        code = run.process.wait(timeout=30)
    finally:
        run.kill()
        server.proc.kill()
    assert code == 128 + signal.SIGINT and "run failed" not in run.stderr(), run.stderr()[-3000:]
    assert "actor_restarts" in (run_dir / "logs.csv").read_text()


def test_the_launcher_fails_with_one_clear_error_when_no_server_stays_reachable(run_dir):
    server = Server("CartPole-v1", 8)
    run = LiveRun("--total-steps", "100000000", "--server-addresses", server.address,
                  "--unreachable-timeout", "1", "--savedir", str(run_dir.parent),
                  "--run-name", run_dir.name)
    try:
        run.wait_for_steps_past(run_dir, 0)
        server.proc.kill()
        code = run.process.wait(timeout=60)
    finally:
        run.kill()
    assert code == 1, run.stderr()[-3000:]
    assert "ConnectionError: no env server has been reachable for" in run.stderr()
    assert "Traceback" not in run.stderr()
