"""A TCP relay on loopback that delays every chunk by a fixed one-way time.

Benchmarks compare runtimes at a given network round trip; `tc netem` would give that but
needs root and changes the machine. Instead point the client at a relay in front of the server:
each chunk read from one side is sent on to the other delay_s after it was read (a round trip
gains 2 * delay_s). Each direction has a reader thread that stamps chunks with their deadline
and a writer thread that sends them when due, so chunks in flight overlap and the delay is not
paid once per chunk: throughput is bounded by the relay's Python copies (a few hundred MiB/s on
loopback), not by delay_s. Byte order per direction is kept.

    with LatencyRelay("127.0.0.1:5000", delay_s=0.001) as relay:
        connect_to(relay.address)

`python bench/latency_relay.py` checks itself: the median round trip of small messages through
a 1 ms relay to an echo server, and the throughput of 50 MiB sent through it.
"""

from __future__ import annotations

import queue
import socket
import threading
import time

CHUNK = 1 << 20  # bytes per recv
IN_FLIGHT = 256  # chunks queued per direction before the reader waits (TCP backpressure)


def split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def nodelay(sock: socket.socket) -> socket.socket:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def shut(sock: socket.socket, how: int = socket.SHUT_RDWR) -> None:
    try:
        sock.shutdown(how)
    except OSError:
        pass  # already closed or never connected


class LatencyRelay:
    """Listens on `listen`; relays each accepted connection to `target`, delay_s each way."""

    def __init__(self, target: str, delay_s: float = 0.001, listen: str = "127.0.0.1:0") -> None:
        self.target, self.delay_s = split(target), delay_s
        self._server = socket.create_server(split(listen))
        self._lock = threading.RLock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._spawn(self._accept)

    @property
    def address(self) -> str:
        host, port = self._server.getsockname()[:2]
        return f"{host}:{port}"

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:  # finished threads are dropped here
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # listener closed
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:  # under the lock so close() sees every socket and thread
                if self._closed:
                    client.close(), upstream.close()
                    return
                self._sockets += [nodelay(client), nodelay(upstream)]
                ends = [client, upstream]  # one popped per finished direction
                for src, dst in ((client, upstream), (upstream, client)):
                    chunks: queue.Queue = queue.Queue(IN_FLIGHT)
                    self._spawn(self._read, src, chunks)
                    self._spawn(self._write, src, dst, chunks, ends)

    def _read(self, src: socket.socket, chunks: queue.Queue) -> None:
        while True:
            try:
                data = src.recv(CHUNK)
            except OSError:
                data = b""  # reset or closed by close(): treated as the end of the stream
            chunks.put((time.monotonic() + self.delay_s, data or None))
            if not data:
                return

    def _write(self, src: socket.socket, dst: socket.socket, chunks: queue.Queue,
               ends: list[socket.socket]) -> None:
        broken = False
        while True:
            deadline, data = chunks.get()
            if broken and data is not None:
                continue  # drain so the reader never waits on a full queue
            if not broken and (wait := deadline - time.monotonic()) > 0:
                time.sleep(wait)  # the end of the stream is delayed like the bytes
            if data is None:
                break
            try:
                dst.sendall(data)
            except OSError:
                broken = True
                shut(src, socket.SHUT_RD)  # the reader sees the end and sends None
        shut(dst, socket.SHUT_WR)  # pending bytes delivered: pass the close on
        with self._lock:
            ends.pop()
            if not ends:  # both directions done: this connection is over
                for sock in (src, dst):
                    if sock in self._sockets:
                        self._sockets.remove(sock)
                    sock.close()

    def close(self, timeout_s: float = 2.0) -> None:
        """Stops accepting, closes every socket and joins the threads (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            socks, self._sockets = self._sockets, []
            threads = list(self._threads)
        shut(self._server)
        self._server.close()
        for sock in socks:
            shut(sock)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for sock in socks:
            sock.close()

    def __enter__(self) -> LatencyRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _echo_server() -> str:
    """A thread that echoes every connection back; returns its address."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with nodelay(conn):
            while data := conn.recv(CHUNK):
                conn.sendall(data)

    def accept() -> None:
        while True:
            threading.Thread(target=serve, args=(server.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return "127.0.0.1:%d" % server.getsockname()[1]


def _recv_exactly(sock: socket.socket, n: int) -> None:
    while n > 0:
        if not (data := sock.recv(min(n, CHUNK))):
            raise ConnectionError("closed early")
        n -= len(data)


def _check(address: str) -> tuple[float, float]:
    """Median round trip (ms) of 100 64-byte messages; MiB/s of 50 MiB echoed back."""
    with nodelay(socket.create_connection(split(address))) as sock:
        trips = []
        for _ in range(100):
            start = time.perf_counter()
            sock.sendall(b"x" * 64)
            _recv_exactly(sock, 64)
            trips.append(time.perf_counter() - start)
        total, block = 50 << 20, b"y" * CHUNK
        start = time.perf_counter()
        sender = threading.Thread(target=lambda: [sock.sendall(block) for _ in range(50)])
        sender.start()
        _recv_exactly(sock, total)
        sender.join()
        return sorted(trips)[50] * 1e3, (total >> 20) / (time.perf_counter() - start)


if __name__ == "__main__":
    echo = _echo_server()
    print("direct:          round trip %.3f ms, %.0f MiB/s" % _check(echo))
    with LatencyRelay(echo, delay_s=0.001) as relay:
        print("relay, 1 ms/way: round trip %.3f ms, %.0f MiB/s" % _check(relay.address))
