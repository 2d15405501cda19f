"""Test helper: run a blocking call in a thread and check whether it returned."""

from __future__ import annotations

import threading

JOIN_S = 5.0  # generous bound for "did not hang"
STILL_BLOCKED_S = 0.05  # a call that cannot complete is still running after this


class Call:
    """Runs fn() in a thread and keeps its result or exception."""

    def __init__(self, fn):
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self.thread.start()

    def _run(self, fn):
        try:
            self.result = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            self.error = e

    def join(self):
        self.thread.join(JOIN_S)
        assert not self.thread.is_alive(), "call did not return"
        return self

    def assert_blocked(self):
        self.thread.join(STILL_BLOCKED_S)
        assert self.thread.is_alive(), f"call returned early: {self.result!r} {self.error!r}"
