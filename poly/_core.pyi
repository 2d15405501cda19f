"""Typed stub of the C++ extension beast.poly._core (csrc/bindings)."""

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
