"""Env servers and remote actors placed on a real two-node Ray cluster, on loopback, started
inside the test.

The cluster (ray.cluster_utils.Cluster: a head and one worker node, 1 CPU each) is started
once for this module and shut down at its end; never with `ray stop`, which would kill every
Ray process on the machine. Marked `ray`: `pytest -m "not ray"` leaves them out of a quick
local run, and .ci/run runs them with the rest.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ray", reason='the [ray] extra: pip install -e ".[ray]"')
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray stays on 127.0.0.1

from beast.config import EnvConfig  # noqa: E402
from beast.poly.cluster import RayEnvServers, RayVectorEnv  # noqa: E402
from beast.poly.server_watch import ServerWatcher  # noqa: E402
from beast.poly.remote_env import RemoteVectorEnv  # noqa: E402
from tests.conftest import wait_for  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300)]

TOKEN = "test-token-" + "7f3a9c" * 8


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def servers(cluster, token: str = TOKEN, **options) -> RayEnvServers:
    return RayEnvServers(EnvConfig(env="CartPole-v1", num_envs=2), ray_address=cluster.address,
                         servers_per_node=1, token=token, num_cpus=0.25, **options)


def test_ray_vector_env_spans_both_nodes_and_steps_as_sync_vector_env(cluster) -> None:
    envs = RayVectorEnv("CartPole-v1", ray_address=cluster.address, servers_per_node=1,
                        num_envs_per_server=2, num_cpus=0.25)
    local = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    try:
        assert envs.servers.num_nodes == 2
        assert envs.num_envs == 4 and len(set(envs.servers.addresses)) == 2
        obs, _ = envs.reset(seed=11)
        expected, _ = local.reset(seed=11)
        np.testing.assert_array_equal(obs, expected)
        rng = np.random.default_rng(0)
        for _ in range(40):  # long enough for some episodes to end and autoreset
            actions = rng.integers(0, 2, size=4)
            got, expected = envs.step(actions), local.step(actions)
            for a, b in zip(got[:4], expected[:4]):
                np.testing.assert_array_equal(a, b)
    finally:
        envs.close()
        local.close()
    assert envs.servers.addresses == []  # closing the env stopped its servers


def test_token_never_on_a_command_line_or_in_ray_logs(cluster) -> None:
    placed = servers(cluster)
    try:
        RemoteVectorEnv(placed.addresses, auth_token=TOKEN).close()  # the servers hold it
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes()
            except OSError:  # the process ended meanwhile
                continue
            assert TOKEN.encode() not in text, f"token visible in ps: {cmdline}"
        session = Path(cluster.head_node.get_session_dir_path()) / "logs"
        logs = [p for p in session.rglob("*") if p.is_file() and p.stat().st_size < 50 << 20]
        assert logs, "no Ray logs to look at"
        for log in logs:
            assert TOKEN.encode() not in log.read_bytes(), f"token in a Ray log: {log}"
    finally:
        placed.close()


def test_a_server_of_another_run_is_refused(cluster) -> None:
    other_run = servers(cluster, token="another-runs-token-" + "1" * 40)
    try:
        with pytest.raises(PermissionError, match="wrong auth token"):
            RemoteVectorEnv(other_run.addresses[:1], auth_token=TOKEN)
        with pytest.raises(PermissionError, match="wrong auth token|auth"):
            RemoteVectorEnv(other_run.addresses[:1], auth_token=None)
    finally:
        other_run.close()


def test_a_killed_server_comes_back_and_the_watcher_hands_its_address_over(cluster) -> None:
    placed = servers(cluster)
    replaced: list[tuple[str, str]] = []
    lines: list[str] = []
    watcher = ServerWatcher(placed, on_replaced=lambda old, new: replaced.append((old, new)),
                            log=lines.append, hang_timeout=60, interval=0.2)
    try:
        before = placed.addresses
        os.kill(placed.pids()[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not replaced and time.monotonic() < deadline:
            time.sleep(0.1)
        assert replaced and replaced[0][0] == before[0] and replaced[0][1] != before[0]
        assert placed.addresses == [replaced[0][1], before[1]]
        assert any("came back as" in line for line in lines)
        envs = RemoteVectorEnv(placed.addresses, auth_token=TOKEN)  # the new one serves
        assert envs.reset(seed=0)[0].shape == (4, 4)
        envs.close()
    finally:
        watcher.close()
        placed.close()


def test_unplaceable_servers_fail_with_one_line(cluster) -> None:
    with pytest.raises(ValueError, match="no node of the Ray cluster") as error:
        servers(cluster, resources={"no_such_resource": 1})
    assert "\n" not in str(error.value)
    # Each node has 1 CPU: two servers of 0.75 CPU fit one per node, never both on one.
    with pytest.raises(ValueError, match="started on the Ray cluster within 3 s") as error:
        RayEnvServers(EnvConfig(env="CartPole-v1", num_envs=2), ray_address=cluster.address,
                      servers_per_node=2, token=TOKEN, num_cpus=0.75, start_timeout=3)
    assert "\n" not in str(error.value)


def env_server_pids() -> list[int]:
    """The Ray workers hosting env servers (Ray titles them ray::EnvServerHost...)."""
    found = subprocess.run(["pgrep", "-f", "ray::EnvServerHost"], capture_output=True, text=True)
    return sorted(int(pid) for pid in found.stdout.split())


def test_polybeast_trains_on_the_cluster_through_a_killed_and_a_stopped_server(cluster,
                                                                               run_dir) -> None:
    from tests.poly.test_reconnect import LiveRun

    run = LiveRun("--ray-address", cluster.address, "--servers-per-node", "1",
                  "--server-cpus", "0.25", "--num-actors", "2", "--step-timeout", "2",
                  "--total-steps", "100000000", "--savedir", str(run_dir.parent),
                  "--run-name", run_dir.name)
    stopped = None
    try:
        run.wait_for_line("ray: 2 env servers on 2 nodes")
        run.wait_for_steps_past(run_dir, 0)
        pids = env_server_pids()
        assert len(pids) == 2, pids
        os.kill(pids[0], signal.SIGKILL)  # Ray restarts it on a new port
        run.wait_for_line("came back as")
        run.wait_for_line("reconnected to")
        run.wait_for_steps_past(run_dir, run.steps(run_dir))

        stopped = next(pid for pid in env_server_pids() if pid != pids[0])
        os.kill(stopped, signal.SIGSTOP)  # alive but hung: the step timeout notices
        run.wait_for_line("lost: TimeoutError")
        run.wait_for_line("has not answered for")  # the watcher has Ray restart it
        assert wait_for(lambda: run.stderr().count("reconnected to") >= 2, timeout=60), (
            run.stderr()[-3000:])
        run.wait_for_steps_past(run_dir, run.steps(run_dir))
        os.killpg(run.process.pid, signal.SIGINT)
        code = run.process.wait(timeout=60)
    finally:
        if stopped is not None:
            try:
                os.kill(stopped, signal.SIGCONT)
            except ProcessLookupError:
                pass
        run.kill()
    assert code == 128 + signal.SIGINT and "run failed" not in run.stderr(), run.stderr()[-3000:]
    assert wait_for(lambda: not env_server_pids(), timeout=30), "the run left servers behind"


@pytest.mark.parametrize("actors", ["central", "remote"])
def test_an_unreachable_head_fails_the_launch_with_one_line_and_no_run_dir(tmp_path,
                                                                         actors) -> None:
    from tests.conftest import run_cli

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    result = run_cli("beast.poly", "--ray-address", address, "--actors", actors,
                     "--savedir", str(tmp_path), "--run-name", "never")
    assert result.returncode == 1, result.stderr
    assert f"cannot reach the Ray cluster's head at {address}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "never").exists()


def remote_actor_host_pids() -> list[int]:
    """The Ray workers hosting remote actors (titled ray::RemoteActorHost...)."""
    found = subprocess.run(["pgrep", "-f", "ray::RemoteActorHost"], capture_output=True,
                           text=True)
    return sorted(int(pid) for pid in found.stdout.split())


def test_polybeast_places_remote_actors_on_both_nodes_and_a_killed_one_comes_back(
        cluster, run_dir) -> None:
    from tests.poly.test_reconnect import LiveRun
    from tests.poly.test_remote_actors import final_row

    run = LiveRun("--actors", "remote", "--ray-address", cluster.address, "--num-actors", "2",
                  "--server-cpus", "0.25", "--batch-size", "1", "--total-steps", "100000000",
                  "--savedir", str(run_dir.parent), "--run-name", run_dir.name)
    try:
        line = run.wait_for_line("remote actors of", timeout=120)
        assert "ray: 2 remote actors" in line and "on 2 nodes" in line, line
        run.wait_for_steps_past(run_dir, 0)
        pids = remote_actor_host_pids()
        assert len(pids) == 2, pids
        os.kill(pids[0], signal.SIGKILL)  # Ray restarts it; it reconnects as a new session
        assert wait_for(lambda: float(final_row(run_dir)["actor_restarts"]) >= 1, 120), \
            run.stderr()[-3000:]
        run.wait_for_steps_past(run_dir, run.steps(run_dir))
        code = run.interrupt()
    finally:
        run.kill()
    assert code == 128 + signal.SIGINT and "run failed" not in run.stderr(), run.stderr()[-3000:]
    assert float(final_row(run_dir)["remote/connected"]) == 2
    assert wait_for(lambda: not remote_actor_host_pids(), timeout=30), "actors left behind"


def test_a_ray_placed_actor_that_stops_for_good_is_reported_in_one_line(cluster) -> None:
    """An actor the learner's spec refuses (another unroll length here) stops instead of being
    restarted for ever, and RayActors.poll says why, in one line."""
    from beast.config import Config, PolyConfig, RunConfig
    from beast.poly._core import ActorServer, BatchingQueue
    from beast.poly.ray_actors import RayActors

    config = Config(env=EnvConfig(env="CartPole-v1", num_envs=2),
                    run=RunConfig(unroll_length=4, num_actors=1),
                    poly=PolyConfig(actors="remote", ray_address=cluster.address,
                                    server_cpus=0.25))
    actors = RayActors(config, generation=0, token=TOKEN)
    queue = BatchingQueue(2)
    server = ActorServer(actors.bind_address("127.0.0.1:0"), {"x": (np.float32, [])}, 8, 2, 10,
                         max_actors=1, queue=queue, auth_token=TOKEN)
    try:
        actors.start(server.address)
        errors: list[str] = []

        def stopped() -> bool:
            try:
                actors.poll()
            except RuntimeError as exc:
                errors.append(str(exc))
            return bool(errors)

        assert wait_for(stopped, timeout=60)
        assert errors[0].startswith("remote actor 0 on the Ray cluster stopped: ")
        assert "expects 8 steps per unroll (--unroll-length), this actor has 4" in errors[0]
        assert "\n" not in errors[0]
    finally:
        actors.close()
        server.close()
        queue.close()
