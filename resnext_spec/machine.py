"""What a measurement ran on, and how much memory it held: the CPU class and the process's RSS.

Timings and memory differ by CPU class (an AVX2-only machine rounds and runs differently from an
AVX-512 one), so every figure the reports print says which class it came from. ``tracemalloc`` sees
none of the frameworks' own allocations (torch's, XLA's, TensorFlow's), so memory is the process's
resident set, sampled while it runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import resource
import threading
import time


def cpu_class(cpuinfo: str | None = None) -> str:
    """``"AVX-512"``, ``"AVX2"`` or ``"other"``, from the flags in /proc/cpuinfo (or the text given);
    ``"unknown"`` where there is none (off Linux)."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return "unknown"
    lines = cpuinfo.splitlines()
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), None)
    if flags is None:
        return "unknown"
    if "avx512f" in flags:
        return "AVX-512"
    return "AVX2" if "avx2" in flags else "other"


def rss_mb() -> float:
    """This process's resident set now, in MiB (its peak so far where /proc is not there)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's peak resident set since it started, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RssSampler:
    """The process's RSS sampled every ``interval`` seconds on a daemon thread, so the peak of any
    stretch of the run (a build, which may overlap another on a second thread) can be asked for."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (perf_counter, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), rss_mb()))
            self._stop.wait(self.interval)

    def peak_between(self, start: float, end: float) -> float:
        """The highest RSS sampled between two ``time.perf_counter()`` readings (MiB)."""
        inside = [mb for t, mb in list(self.samples) if start <= t <= end]
        return max(inside, default=rss_mb())


def _libc():
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


_LIBC = _libc()


def release_memory() -> None:
    """Give freed memory back to the system: Python's cycles collected, then glibc's ``malloc_trim``.

    glibc keeps what a process frees in its heaps (and raises its mmap threshold after each large
    free, so later large arrays come from the heap too); a harness that builds and drops a model a
    minute then grows by each one. Measured on the default parity run: the torch references alone
    left 1.3 GB resident after they were freed, 0.4 GB after a trim. A no-op off glibc.
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
