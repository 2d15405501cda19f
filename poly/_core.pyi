"""Typed stub of the C++ extension beast.poly._core (csrc/bindings)."""

from collections.abc import Callable

import numpy as np

class BatchingQueue:
    """Bounded many-producer / many-consumer queue that hands out batches.

    An item is a ``dict[str, np.ndarray]``; ``dequeue`` joins n items' arrays
    along ``batch_dim``: a new axis there (``stack=True``), or concatenation
    along the existing axis (``stack=False``, e.g. ``[T, B_i, ...]`` items with
    ``batch_dim=1`` give ``[T, sum(B_i), ...]``). The first item fixes keys,
    dtypes and shapes (except ``batch_dim`` when concatenating). Enqueued
    arrays are held by reference, not copied, until dequeued. After
    ``close()``: ``enqueue`` raises RuntimeError, ``dequeue`` drains the rest
    and then raises StopIteration.
    """

    def __init__(self, capacity: int, batch_dim: int = 0, *, stack: bool = True) -> None: ...
    def enqueue(self, item: dict[str, np.ndarray], timeout: float | None = None) -> None:
        """Add one item, waiting while full.

        Raises ValueError (schema mismatch, naming the key), TypeError (not a
        dict of str to ndarray, or an unsupported dtype), TimeoutError (still
        full after ``timeout`` seconds), RuntimeError (closed).
        """
    def dequeue(
        self, min_items: int = 1, max_items: int | None = None, timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Wait for ``min_items``, return up to ``max_items`` (default: ``min_items``) joined.

        After ``timeout`` seconds returns the items queued then, or raises
        TimeoutError if none. Once closed: drains, then raises StopIteration.
        """
    def close(self) -> None:
        """Idempotent; wakes every blocked enqueue and dequeue."""
    def __len__(self) -> int: ...
    def __iter__(self) -> BatchingQueue: ...
    def __next__(self) -> dict[str, np.ndarray]: ...
    @property
    def closed(self) -> bool: ...
    @property
    def capacity(self) -> int: ...
    @property
    def batch_dim(self) -> int: ...
    @property
    def stack(self) -> bool: ...

class Batch:
    """Requests taken together by ``DynamicBatcher.get_batch``.

    ``inputs`` stacks them along a new axis 0; ``len(batch)`` is their number.
    Resolve it exactly once with ``set_outputs`` or ``set_error``; dropping it
    unresolved fails its callers with RuntimeError. Resolving twice raises
    RuntimeError.
    """

    @property
    def inputs(self) -> dict[str, np.ndarray]: ...
    @property
    def resolved(self) -> bool: ...
    def __len__(self) -> int: ...
    def set_outputs(self, outputs: dict[str, np.ndarray]) -> None:
        """Caller i gets ``{k: v[i]}`` (copied). Every array needs axis 0 == ``len(self)``.

        Otherwise every caller fails at once with RuntimeError and this raises
        ValueError (batch size mismatch) or TypeError (not a dict of arrays).
        """
    def set_error(self, message: str) -> None:
        """Fail every caller of the batch with a RuntimeError whose text includes ``message``."""

class DynamicBatcher:
    """Central inference: callers submit one row each, inference threads batch them.

    Callers block in ``compute(inputs)`` (one row, no batch axis) until
    their row is computed and get ``{k: v[i]}``, a new array per key. Inference
    threads ``get_batch()`` (rows stacked along a new axis 0), run the model,
    and ``set_outputs``. The first request fixes keys, dtypes and shapes. At
    most ``max_pending`` requests wait to be batched; ``compute`` blocks beyond
    that. ``close()`` fails every unfinished request (RuntimeError "closed"),
    and ``get_batch`` then raises StopIteration.
    """

    def __init__(self, max_pending: int = 1024) -> None: ...
    def compute(self, inputs: dict[str, np.ndarray], timeout: float | None = None) -> dict[str, np.ndarray]:
        """Submit one row and wait for its outputs.

        Raises ValueError (schema mismatch, naming the key), TypeError (not a
        dict of str to ndarray, or an unsupported dtype), RuntimeError (its
        batch failed, or the batcher is or gets closed), TimeoutError (the whole
        call took longer than ``timeout`` seconds).
        """
    def get_batch(self, min_items: int = 1, max_items: int | None = None, timeout: float | None = None) -> Batch:
        """Wait for ``min_items`` requests, take up to ``max_items`` (default: all pending).

        After ``timeout`` seconds takes the requests pending then, or raises
        TimeoutError if none. Raises StopIteration once closed.
        """
    def close(self) -> None:
        """Idempotent; fails every unfinished request, wakes every blocked call."""
    def __len__(self) -> int: ...
    def __iter__(self) -> DynamicBatcher: ...
    def __next__(self) -> Batch: ...
    @property
    def closed(self) -> bool: ...
    @property
    def max_pending(self) -> int: ...

class EnvServer:
    """Hosts environments for remote actors (wire protocol: csrc/net/wire.h).

    Each client connection gets its own session from ``make_session()``: an object with
    ``spec() -> dict`` (observation_shape, observation_dtype, action_shape, action_dtype,
    num_actions, num_envs), ``reset(request: dict[str, np.ndarray]) -> {"obs": [K, ...]}``
    (RESET's checked arrays: seed, seeded, option/...),
    ``step(action: np.ndarray) -> {"obs", "reward", "terminated", "truncated"}`` and optionally
    ``attr(request) -> dict`` (ATTR -> ATTR_RESULT) and ``close()``. C++ threads do all socket I/O without the GIL and take it only for those calls.
    A Python exception there reaches that client as an ERROR carrying its traceback; a malformed
    frame closes that connection only (reason logged to stderr).

    The options bound what clients can make it hold (csrc/net/wire.h): frame size, connections
    served at once (one more is refused with an error), and deadlines in seconds (None: for ever)
    for the handshake, for each next request, and for sending each reply. With ``auth_token``,
    clients must prove the token (HMAC-SHA256 over a fresh nonce) before any env is made.
    """

    def __init__(self, address: str, make_session: Callable[[], object], *, max_frame_bytes: int = ...,
                 max_connections: int = 128, handshake_timeout: float | None = 10.0,
                 idle_timeout: float | None = 600.0, send_timeout: float | None = 60.0,
                 auth_token: str | None = None) -> None:
        """Bind ``"HOST:PORT"`` (port 0: a free port) or ``"unix:/path"``; ConnectionError if it cannot,
        ValueError for a bad option or a non-loopback address without ``auth_token``."""
    @property
    def address(self) -> str:
        """The bound address, e.g. ``"127.0.0.1:43121"``."""
    @property
    def num_connections(self) -> int: ...
    def close(self) -> None:
        """Idempotent; stops accepting, ends every connection, closes every session."""
    def __enter__(self) -> EnvServer: ...
    def __exit__(self, *args: object) -> None: ...

class EnvClient:
    """Blocking client of an env server: K environments stepped as one batch.

    ``timeout`` (seconds; None: for ever) bounds the connect and handshake and each request. An
    env exception on the server raises RuntimeError with its traceback (the client stays usable);
    a dead or unreachable server raises ConnectionError, a slow one TimeoutError, and after either
    the client is closed. ``auth_token`` answers a server that asks for one (the token is never
    sent); a server that refuses it (wrong, or none given) raises PermissionError.
    """

    def __init__(self, address: str, timeout: float | None = 30.0, *, max_frame_bytes: int = ...,
                 auth_token: str | None = None) -> None: ...
    def reset(self, seed: int | None = None) -> dict[str, np.ndarray]:
        """Reset all K envs (env i gets ``seed + i``); returns ``{"obs": [K, ...]}``."""
    def reset_with(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """RESET with these arrays (``seed``, ``seeded``, ``option/...``: csrc/net/wire.h);
        returns ``{"obs": [K, ...]}`` and any ``info/...`` arrays."""
    def attr(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """ATTR (get_attr / set_attr / call; beast.poly.remote_attr builds the arrays); returns
        the ATTR_RESULT's ``result/...`` arrays."""
    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Step all K envs with ``actions`` ``[K, *action_shape]`` (safe casts only).

        Returns obs, reward, terminated, truncated, each ``[K, ...]`` (next-step autoreset).
        Raises ValueError (wrong shape), TypeError (unsafe dtype), RuntimeError (the env
        raised), ConnectionError, TimeoutError.
        """
    def close(self) -> None:
        """Idempotent; tells the server, then closes the socket. A request blocked in another
        thread (a hung server) is aborted: it raises ConnectionError at once."""
    def __enter__(self) -> EnvClient: ...
    def __exit__(self, *args: object) -> None: ...
    @property
    def address(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def num_envs(self) -> int: ...
    @property
    def num_actions(self) -> int:
        """Discrete action count; 0 for other action spaces."""
    @property
    def observation_shape(self) -> tuple[int, ...]: ...
    @property
    def observation_dtype(self) -> np.dtype: ...
    @property
    def action_shape(self) -> tuple[int, ...]: ...
    @property
    def action_dtype(self) -> np.dtype: ...

class ActorPool:
    """C++ actor threads, one per env server address, writing ``[T+1, K]`` unrolls.

    Each thread connects, resets with ``seed + i * K`` (connection i), then loops:
    ``inference_batcher.compute({"obs": [K, *obs_shape], "reward": [K] f32, "terminated": [K]
    bool, "truncated": [K] bool, **state})`` must return exactly the keys of ``agent_spec``
    (``{key: (dtype, per-env shape)}``, the rollout's agent half from
    ``beast.rollout.RolloutSpec``); the thread writes entry t and steps the envs with
    ``outputs[action_key]``. ``state_keys`` are outputs fed back to the next compute (zeros at
    first; the unroll records the value entering each step). Every T steps it enqueues an
    unroll: the env half (obs, reward, terminated, truncated, episode_return, episode_step) plus
    every agent key, each ``[T+1, K, ...]`` (entry 0 repeats the previous unroll's last entry;
    episode sums restart at the step after an episode ended, or a game when the env sends
    ``game_over``, as in ``beast.acting.UnrollWorker``). Use ``BatchingQueue(capacity,
    batch_dim=1, stack=False)``. All servers must serve the same K and specs, with actions of
    the agent's action shape.

    A lost server (the connection drops, or no reply within ``connect_timeout``: dead or hung)
    costs that connection its unfinished unroll; it reconnects with backoff to its address, which
    ``replace_address`` can point at a replacement, and resets with a fresh seed (``seed + (s * N
    + i) * K``, session s of connection i of N). ``drain_events()`` says so. The pool fails only
    when no connection has been up for ``unreachable_timeout`` seconds (0: at the first loss).
    Any other failure in a thread (a first connect, an env that raised, bad inference outputs)
    stops the others; ``check()`` raises it as RuntimeError naming the connection and address. A thread that finds the batcher or queue closed just
    stops. ``close()`` never closes the batcher or queue (the caller owns them); it returns
    promptly while inference is served, so shut down with
    ``pool.close(); batcher.close(); queue.close()`` while the inference thread runs, or
    ``batcher.close(); pool.close(); queue.close()`` if it may be gone. Dropping an unclosed pool
    closes it (waiting like ``close()``).
    """

    def __init__(self, unroll_length: int, learner_queue: BatchingQueue, inference_batcher: DynamicBatcher,
                 env_server_addresses: list[str], seed: int = 0, connect_timeout: float | None = 30.0,
                 *, agent_spec: dict[str, tuple[np.dtype, list[int]]], action_key: str,
                 state_keys: list[str] = ..., auth_token: str | None = None,
                 unreachable_timeout: float | None = 60.0) -> None:
        """Nothing connects before ``start()``; ``connect_timeout`` also bounds each env reply.
        ``unreachable_timeout`` None waits for a server for ever.
        ValueError when ``agent_spec`` lacks ``action_key`` or a state key, or a key clashes
        with the env half. ``auth_token`` answers env servers that ask for one."""
    def start(self) -> None:
        """Spawn one thread per address. Idempotent; RuntimeError after ``close()``."""
    def close(self) -> None:
        """Idempotent; stop and join every thread."""
    def check(self) -> None:
        """Raise RuntimeError with the first thread failure, if any."""
    def __enter__(self) -> ActorPool: ...
    def __exit__(self, *args: object) -> None: ...
    @property
    def error(self) -> str | None:
        """The first thread failure (what ``check()`` raises), or None."""
    @property
    def num_steps(self) -> int:
        """Env transitions so far, over all connections (each step adds K)."""
    @property
    def num_unrolls(self) -> int:
        """Unrolls enqueued so far."""
    @property
    def running(self) -> bool:
        """Whether any actor thread is still running."""
    @property
    def num_reconnects(self) -> int:
        """Sessions opened after a lost one, over all connections."""
    @property
    def num_dropped_unrolls(self) -> int:
        """Unfinished unrolls dropped with a lost connection."""
    @property
    def num_connected(self) -> int:
        """Connections up now."""
    @property
    def unroll_length(self) -> int: ...
    @property
    def addresses(self) -> list[str]:
        """Each connection's current address."""
    def replace_address(self, old_address: str, new_address: str) -> int:
        """Point every connection at ``old_address`` to ``new_address`` (a replacement server),
        waking those waiting to reconnect; returns how many were pointed over."""
    def drain_events(self) -> list[str]:
        """Event lines since the last call (lost, reconnected, replaced), oldest first."""

def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (32 bytes), as the env server's handshake computes it (csrc/net/auth.h)."""

class ActorServer:
    """The learner's end of the actor protocol (csrc/net/actor_server.h): accepts up to
    `max_actors` remote actors, checks each UNROLL against `schema` ({key: (dtype, per-env
    shape)}, [T+1, K, ...] on the wire), tags it with `actor_id` int64 [1, K] and enqueues it;
    sends WEIGHTS only when asked."""

    def __init__(self, address: str, schema: dict[str, tuple[object, list[int]]],
                 unroll_length: int, num_envs: int, weights_size: int, *, max_actors: int,
                 queue: BatchingQueue, auth_token: str | None = None,
                 handshake_timeout: float | None = 10.0, idle_timeout: float | None = 600.0,
                 send_timeout: float | None = 60.0) -> None: ...
    def send_weights(self, actor_id: int, version: int, weights: np.ndarray) -> bool:
        """Queue WEIGHTS (float32 [weights_size]) for that actor; False if no actor holds
        the id now. A message not yet written is replaced by a newer one."""
    def take_joined(self) -> list[int]: ...
    def drain_events(self) -> list[str]: ...
    @property
    def address(self) -> str: ...
    @property
    def num_connected(self) -> int: ...
    @property
    def num_sessions(self) -> int: ...
    @property
    def num_unrolls(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...
    @property
    def weight_messages(self) -> int: ...
    @property
    def weights_replaced(self) -> int: ...
    @property
    def bytes_sent_per_actor(self) -> list[int]: ...
    @property
    def max_actors(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> ActorServer: ...
    def __exit__(self, *args: object) -> None: ...

class ActorClient:
    """A remote actor's end (csrc/net/actor_client.h): checks the learner's K, T and weight
    count at connect (ValueError on a mismatch); `poll_weights` returns the newest checked
    (version, float32 [n]) or None, and raises ConnectionError for a bad WEIGHTS frame."""

    def __init__(self, address: str, num_envs: int, unroll_length: int, weights_size: int, *,
                 timeout: float | None = 30.0, auth_token: str | None = None) -> None: ...
    def send_unroll(self, unroll: dict[str, np.ndarray]) -> None: ...
    def poll_weights(self, wait: float | None) -> tuple[int, np.ndarray] | None: ...
    def close(self) -> None: ...
    @property
    def actor_id(self) -> int: ...
    @property
    def version(self) -> int: ...
    @property
    def bytes_received(self) -> int: ...
