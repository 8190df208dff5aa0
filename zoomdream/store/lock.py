"""Work folder locks: an exclusive OS lock per folder, released by the OS on any exit, so a crash leaves no
stale lock and two renders never share a folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from zoomdream import media
from zoomdream.errors import ZoomdreamError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; renders there are not guarded against each other
    fcntl = None


LOCK_NAME = ".zoomdream.lock"


def _lock(folder: Path):
    """An exclusive OS lock on ``folder``, released by the OS on any exit, so a crash leaves no stale lock.

    The render holding a lock may delete its lock file (it takes its folder away when done), so a lock taken on
    a file that is no longer the one at that path protects nothing: then it is let go and taken again on the
    file there now (made afresh, with its folder, where they are gone)."""
    if fcntl is None:
        return None
    path = folder / LOCK_NAME
    for _ in range(20):
        media.make_folder(folder)
        try:
            handle = open(path, "a")
        except FileNotFoundError:  # its folder was taken away between the two lines
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            break
        if _same_file(handle, path):
            return handle
        handle.close()
    raise ZoomdreamError(f"another render is using '{folder}' (wait for it to finish, or give this one "
                         f"another output or --frames-dir)")


def busy(folder: Path) -> bool:
    """Whether a live render holds ``folder``'s lock (asked by taking it for a moment; nothing is created)."""
    if fcntl is None:
        return False
    try:
        handle = open(folder / LOCK_NAME, "rb")
    except OSError:  # no lock file: no render has held the folder, or the last one finished
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _same_file(handle, path: Path) -> bool:
    """Whether the open ``handle`` is still the file at ``path`` (not deleted or replaced since it was opened)."""
    try:
        here, there = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
