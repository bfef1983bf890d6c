"""A worker's own resources: its memory, measured and given back, and how errors are told."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import traceback

import psutil


def process_tree_rss(pid: int | None = None) -> int:
    """Resident memory of a process and all its children (the training processes), in bytes."""
    try:
        root = psutil.Process(pid)
        total = root.memory_info().rss
        for child in root.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return int(total)
    except psutil.NoSuchProcess:
        return 0


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 — glibc only; musl and others have no such call
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


def release_memory() -> None:
    """Give a finished job's memory back to the operating system.

    Collecting frees the job's cycles of Python objects (models, environments, loggers refer to
    one another); glibc then keeps the freed heap for reuse unless asked to hand it back, which
    would show up as growth across jobs in a long-lived worker.
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def error_detail(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
