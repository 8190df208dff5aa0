"""Ends a local Ray cluster's processes when the driver that started it ends, however it ends.

Ray ties its head's processes to the driver (a kill -9 takes the raylet and the GCS with it), but the raylet's
agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlive it: they see the raylet die at once, then
report its death to the GCS, which died too, for 60 s before they exit, listening on their ports meanwhile.
This process reads a pipe from the driver; at its end (the driver's exit, crash or kill) it kills what is left
of the processes it was given and their descendants, which it follows while the driver runs (Linux' /proc).

    python -m zoomdream.cluster.watchdog PID... < pipe from the driver
"""
from __future__ import annotations

import os
import signal
import sys
import threading

POLL_S = 0.5  # how often the processes to end are looked for: the agents start with the cluster


def process_table() -> dict[int, tuple[int, str]]:
    """Every process's parent and start time (which tells a process from a later one given its pid)."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rpartition(")")[2].split()
                table[int(entry.name)] = (int(fields[1]), fields[19])
            except (OSError, IndexError, ValueError):  # ended meanwhile
                pass
    return table


def follow(tracked: dict[int, str]) -> None:
    """Add the descendants of the tracked processes, with their start times, to ``tracked``."""
    table = process_table()
    grown = True
    while grown:
        more = {pid: start for pid, (parent, start) in table.items()
                if parent in tracked and table.get(parent, (0, ""))[1] == tracked[parent] and pid not in tracked}
        tracked.update(more)
        grown = bool(more)


def main(roots: list[int]) -> None:
    table = process_table()
    tracked = {pid: table[pid][1] for pid in roots if pid in table}
    ended = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), ended.set()), daemon=True).start()
    while True:
        follow(tracked)
        if ended.wait(POLL_S):
            break
    table = process_table()
    for pid, start in tracked.items():
        if table.get(pid, (0, ""))[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # ended meanwhile
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the driver's terminal is the driver's to handle
    main([int(pid) for pid in sys.argv[1:]])
