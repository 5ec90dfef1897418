"""Phase timers for `bench perf`: a no-op unless a recording is open, so the hot path pays one dict lookup.

The sampler, trainer and methods mark their phases (``with phase("rollout.reference"): ...``); ``record()``
collects the seconds spent in each phase, and the peak resident memory while it ran, until it closes. On an
accelerator the device is synchronised at each phase boundary, so a phase's time is its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import defaultdict

import torch

_recording: dict | None = None


def _sync() -> None:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        accelerator.synchronize()


@contextlib.contextmanager
def phase(name: str):
    """Add the time spent inside to ``name`` in the open recording (nothing when none is open)."""
    if _recording is None:
        yield
        return
    _sync()
    start = time.perf_counter()
    try:
        yield
    finally:
        _sync()
        if _recording is not None:
            _recording["seconds"][name] += time.perf_counter() - start
            _recording["calls"][name] += 1


@contextlib.contextmanager
def record():
    """Collect phase times while open: yields a dict that holds ``seconds`` and ``calls`` per phase."""
    global _recording
    previous = _recording
    _recording = {"seconds": defaultdict(float), "calls": defaultdict(int)}
    try:
        yield _recording
    finally:
        _recording = previous


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc's malloc_trim), so a phase's growth is its own allocations and
    not a reuse of pages an earlier phase left resident. A no-op where glibc is absent."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak resident memory (and the accelerator's max allocated, where there is one) while the block runs.

    A thread samples /proc every ``interval`` seconds; ``peak_rss`` and ``peak_device`` are absolute bytes,
    ``rss_start`` is the resident memory when the block began (after freed memory is returned to the OS).
    """

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak_rss = self.rss_start = 0
        self.peak_device: int | None = None

    def __enter__(self):
        _release_free_memory()
        self.rss_start = self.peak_rss = resident_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, resident_bytes())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, resident_bytes())
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            self.peak_device = int(torch.cuda.max_memory_allocated())
        return False
