"""A wake-up pipe for a thread that owns ZeroMQ sockets.

Sockets belong to one thread, so other threads hand it work through a queue and wake its
poller through this pipe (a zmq.Poller polls plain file descriptors too). Writes never
block (a full pipe means the poller is awake anyway) and never happen after close, so a
late wake cannot write into a descriptor number the process has reused.
"""

from __future__ import annotations

import os
import threading

__all__ = ["WakePipe"]


class WakePipe:
    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._lock = threading.Lock()
        self._open = True

    def fileno(self) -> int:
        """The end to register with the poller."""
        return self._r

    def wake(self) -> None:
        """Thread-safe; a no-op once closed."""
        with self._lock:
            if not self._open:
                return
            try:
                os.write(self._w, b"x")
            except (BlockingIOError, OSError):
                pass  # full: the poller is awake already

    def drain(self) -> None:
        try:
            while os.read(self._r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        with self._lock:
            if not self._open:
                return
            self._open = False
            for fd in (self._r, self._w):
                try:
                    os.close(fd)
                except OSError:
                    pass
