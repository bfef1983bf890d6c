from __future__ import annotations

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
