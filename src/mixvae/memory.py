"""Memory: how much there is, what each stage of a run will take (the plan, checked before the
run starts), and what each stage took (peak resident memory, recorded when ``MIXVAE_MEMORY_LOG``
names a file; ``benchmarks/memory.py`` reads it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["LOG_ENV", "Need", "PlanError", "available_memory", "check_plan", "format_bytes", "release",
           "resident_memory", "stage"]

LOG_ENV = "MIXVAE_MEMORY_LOG"  # a file to which each stage appends one JSON line: its peak resident memory


def available_memory() -> int | None:
    """Bytes of memory available to new allocations without swapping (Linux), or None where unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


_libc: list[ctypes.CDLL] | None = None  # glibc, once looked for (empty: not there)


def release() -> None:
    """Hand the heap's free memory back to the system (glibc's ``malloc_trim``; nothing elsewhere).

    A pass over many large batches (the routing of every image, say) would otherwise grow the
    process: glibc raises its threshold for serving large blocks from ``mmap`` after the first
    ones are freed, then serves them from heaps whose free space it keeps (measured: 6.7 GB
    resident after the routing of 1,000,000 images by the convolutional manager, 0.5 GB with a
    trim after each batch, which takes under a millisecond)."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            found = ctypes.CDLL(name) if name else None
        except OSError:
            found = None
        _libc = [found] if found is not None and hasattr(found, "malloc_trim") else []
    for libc in _libc:
        libc.malloc_trim(0)


def resident_memory() -> tuple[int, int] | None:
    """(resident, peak resident) bytes of this process (Linux's VmRSS and VmHWM), or None where unknown."""
    found: dict[str, int] = {}
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    found[line[:5]] = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return (found["VmRSS"], found["VmHWM"]) if len(found) == 2 else None


def _reset_peak() -> bool:
    """Start the kernel's peak count (VmHWM) again from the present resident memory (Linux)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


_open_stages: list[list[int]] = []  # the peak seen so far by each stage that is open, innermost last


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Record the peak resident memory of the code inside (nested stages included) as one JSON line
    in the file ``MIXVAE_MEMORY_LOG`` names; nothing when it names none."""
    path = os.environ.get(LOG_ENV)
    before = resident_memory() if path else None
    if path is None or before is None:
        yield
        return
    if _open_stages:  # the enclosing stage's peak so far, before this one starts the count again
        _open_stages[-1][0] = max(_open_stages[-1][0], before[1])
    between = before[1]  # the peak since the last count was started: work outside any stage included
    own = _reset_peak()
    _open_stages.append([before[0]])
    t0 = time.perf_counter()
    try:
        yield
    finally:
        seen = _open_stages.pop()[0]
        now = resident_memory() or before
        peak = max(seen, now[1])
        if _open_stages:
            _open_stages[-1][0] = max(_open_stages[-1][0], peak)
        entry = {"stage": name, "start_rss": before[0], "peak_rss": peak, "end_rss": now[0], "peak_before": between,
                 "peak_of": "stage" if own else "process", "seconds": round(time.perf_counter() - t0, 3)}
        with open(path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")


@dataclass(frozen=True)
class Need:
    """What one stage of a run will hold at its peak, on top of what the run already holds."""

    stage: str
    bytes: int
    way_out: str  # what the user can do when it does not fit


class PlanError(MemoryError):
    """A run's memory plan does not fit in the memory available (one line, naming the stage)."""


def check_plan(needs: list[Need], held: int = 0, available: int | None = None) -> None:
    """PlanError naming the first stage whose need exceeds the memory available now (or
    ``available``); ``held``, the bytes of images already read into memory (which the memory
    available already leaves out), is named in the message."""
    free = available_memory() if available is None else available
    if free is None:
        return
    for need in needs:
        if need.bytes > free:
            raise PlanError(f"{need.stage} needs about {format_bytes(need.bytes)} of memory, more than the "
                            f"{format_bytes(free)} available{_held(held)}; {need.way_out}")


def _held(held: int) -> str:
    return f" besides the {format_bytes(held)} of images already read" if held else ""
