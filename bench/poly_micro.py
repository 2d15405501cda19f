"""Micro-benchmarks of the poly runtime's C++ pieces, each beside a same-run baseline.

    python bench/poly_micro.py [--seconds 1.0]

Prints: BatchingQueue items/s (one producer, one consumer taking batches of 32); DynamicBatcher
round trip with no model (1 caller; 32 callers filling one batch); env-server loopback round
trip p50/p90 for one CartPole step and a 16-env batched step (and the same round trip with an
echo session that runs no env, i.e. the transport alone), beside the same local vector env
stepped in-process and a multiprocessing.Pipe ping-pong between two Python processes. Figures
only: nothing here asserts.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from beast.envs.make import make_vector_env
from beast.poly import BatchingQueue, DynamicBatcher, EnvClient

REPO = Path(__file__).resolve().parent.parent


def percentiles_us(samples: list[float]) -> str:
    p50, p90 = np.percentile(np.array(samples) * 1e6, [50, 90])
    return f"p50 {p50:8.1f} us   p90 {p90:8.1f} us   (n={len(samples)})"


def bench_batching_queue(seconds: float) -> None:
    queue = BatchingQueue(capacity=256)
    item = {"obs": np.zeros(4, np.float32), "action": np.array(0, np.int64)}
    stop = threading.Event()

    def produce():
        try:
            while not stop.is_set():
                queue.enqueue(item)
        except RuntimeError:  # closed
            pass

    producer = threading.Thread(target=produce)
    producer.start()
    taken, end = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        taken += len(queue.dequeue(min_items=32)["action"])
    elapsed = time.perf_counter() - start
    stop.set()
    queue.close()
    producer.join()
    print(f"BatchingQueue        {taken / elapsed:12,.0f} items/s (batches of 32, 1 producer thread)")


def bench_dynamic_batcher(seconds: float, callers: int) -> None:
    batcher = DynamicBatcher(max_pending=1024)
    request = {"obs": np.zeros(4, np.float32)}
    samples: list[float] = []
    stop = threading.Event()

    def infer():
        for batch in batcher:
            batch.set_outputs({"action": np.zeros(len(batch), np.int64)})

    def call():
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                batcher.compute(request)
            except RuntimeError:  # closed
                return
            samples.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=infer)] + [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    batcher.close()
    for t in threads:
        t.join()
    print(f"DynamicBatcher x{callers:<3}  {percentiles_us(samples)}  per compute() round trip, no model")


def pipe_echo(conn) -> None:
    while (msg := conn.recv()) is not None:
        conn.send(msg)


def bench_pipe(seconds: float, num_envs: int) -> None:
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=pipe_echo, args=(child,))
    proc.start()
    payload = np.zeros(num_envs, np.int64)
    samples, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        parent.send(payload)
        parent.recv()
        samples.append(time.perf_counter() - t0)
    parent.send(None)
    proc.join()
    print(f"  baseline Pipe ping-pong     {percentiles_us(samples)}")


class EchoSession:
    """A session shaped like CartPole's (obs float32[K, 4]) whose step runs no env: it hands back
    preallocated arrays, so the server round trip shows the transport cost alone."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.result = {"obs": np.zeros((num_envs, 4), np.float32), "reward": np.zeros(num_envs, np.float64),
                       "terminated": np.zeros(num_envs, np.bool_), "truncated": np.zeros(num_envs, np.bool_)}

    def spec(self) -> dict:
        return {"observation_shape": (4,), "observation_dtype": np.dtype(np.float32), "action_shape": (),
                "action_dtype": np.dtype(np.int64), "num_actions": 2, "num_envs": self.num_envs}

    def reset(self, request):
        return {"obs": self.result["obs"]}

    def step(self, action):
        return self.result


def serve_echo(num_envs: int) -> None:
    """Child process: an EnvServer of EchoSessions; prints its address, serves until stdin closes."""
    from beast.poly._core import EnvServer

    server = EnvServer("127.0.0.1:0", lambda: EchoSession(num_envs))
    print(server.address, flush=True)
    sys.stdin.read()
    server.close()


def time_server(command: list[str], seconds: float, num_envs: int) -> list[float]:
    server = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    address = server.stdout.readline().strip()
    actions = np.zeros(num_envs, np.int64)
    try:
        with EnvClient(address, timeout=10.0) as client:
            client.reset(seed=0)
            samples, end = [], time.perf_counter() + seconds
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                client.step(actions)
                samples.append(time.perf_counter() - t0)
        return samples
    finally:
        server.terminate()
        server.wait(10)


def bench_env_server(seconds: float, num_envs: int) -> None:
    print(f"env step, CartPole-v1 x{num_envs}:")
    samples = time_server(
        [sys.executable, "-m", "beast.poly.env_server", "--env", "CartPole-v1", "--num-envs", str(num_envs)],
        seconds, num_envs)
    print(f"  env server loopback TCP     {percentiles_us(samples)}")
    samples = time_server([sys.executable, __file__, "--serve-echo", str(num_envs)], seconds, num_envs)
    print(f"  bare server round trip      {percentiles_us(samples)}  (echo session, no env)")
    actions = np.zeros(num_envs, np.int64)
    local = make_vector_env("CartPole-v1", num_envs)
    local.reset(seed=0)
    samples, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        local.step(actions)
        samples.append(time.perf_counter() - t0)
    print(f"  baseline local vector env   {percentiles_us(samples)}")
    bench_pipe(seconds, num_envs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    parser.add_argument("--serve-echo", type=int, metavar="K", help=argparse.SUPPRESS)  # internal: the echo server
    parser.add_argument("--only-env-server", action="store_true", help="run only the env-server figures")
    args = parser.parse_args()
    if args.serve_echo:
        serve_echo(args.serve_echo)
        return
    if args.only_env_server:
        bench_env_server(args.seconds, num_envs=1)
        bench_env_server(args.seconds, num_envs=16)
        return
    bench_batching_queue(args.seconds)
    bench_dynamic_batcher(args.seconds, callers=1)
    bench_dynamic_batcher(args.seconds, callers=32)
    bench_env_server(args.seconds, num_envs=1)
    bench_env_server(args.seconds, num_envs=16)


if __name__ == "__main__":
    main()
