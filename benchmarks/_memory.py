"""Bytes in use on the heap, read from the allocators themselves: cheap enough to measure a
million rate-limit keys without slowing the calls being timed.

`tracemalloc` is exact but makes every allocation several times slower (about 10x for a
rate limiter's call), which would distort the per-call times measured in the same run and
stretch a million-key run to minutes. Instead, `heap_bytes()` adds up what the two
allocators of CPython hold right now:

- pymalloc, which serves objects of up to 512 bytes: the bytes in its allocated blocks, as
  `sys._debugmallocstats()` reports them;
- the C library's `malloc`, which serves everything larger (a dict's table, a list's array):
  `mallinfo2()`'s bytes in use, from the main heap and from chunks mapped on their own.

The difference between two readings, each after `gc.collect()`, is what the code between
them kept alive, to within allocator rounding (pymalloc rounds a block up to 16 bytes,
`malloc` adds a header of 8 bytes). It needs CPython with pymalloc on Linux with glibc 2.33
or newer; elsewhere `heap_bytes()` returns None and the reports show no memory figures.
`tracemalloc` remains the tool for small counts (the breaker sizes, see group_scaling).
"""

from __future__ import annotations

import ctypes
import gc
import os
import re
import sys
import tempfile
from collections.abc import Callable
from functools import cache

__all__ = ("heap_bytes",)

_ALLOCATED = re.compile(rb"# bytes in allocated blocks\s*=\s*([\d,]+)")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


@cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc older than 2.33
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return function  # type: ignore[no-any-return]


def _pymalloc_bytes() -> int | None:
    # `_debugmallocstats` writes to the C stderr: point fd 2 at a file while it runs.
    debug = getattr(sys, "_debugmallocstats", None)
    if debug is None:
        return None
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            debug()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        match = _ALLOCATED.search(out.read())
    # No such line when pymalloc is off (PYTHONMALLOC=malloc, or tracemalloc hooks).
    return None if match is None else int(match.group(1).replace(b",", b""))


def heap_bytes() -> int | None:
    """Bytes allocated and not yet freed, after a full garbage collection; None where the
    allocators cannot be read (see the module docstring)."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    gc.collect()
    python = _pymalloc_bytes()
    if python is None:
        return None
    info = mallinfo2()
    return python + int(info.uordblks) + int(info.hblkhd)
