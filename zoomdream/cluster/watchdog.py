"""Ends a local Ray cluster's processes when the driver that started it ends, however it ends.

Ray ties its head's processes to the driver (a kill -9 takes the raylet and the GCS with it), but the raylet's
agents (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlive it: they see the raylet die at once, then
report its death to the GCS, which died too, for 60 s before they exit, listening on their ports meanwhile.
The driver starts the cluster with ``MARK=TOKEN`` in its environment, which every process of the cluster
inherits (the agents and workers the raylet starts later too), and this process with a pipe from it; at the
pipe's end (the driver's exit, crash or kill) it kills every process still marked, found in Linux' /proc. The
mark, unlike the processes' parentage, survives their parent's death.

    python -m zoomdream.cluster.watchdog TOKEN DRIVER_PID < pipe from the driver
"""
from __future__ import annotations

import os
import signal
import sys

MARK = "ZOOMDREAM_LOCAL_CLUSTER"  # the environment variable that marks a local cluster's processes


def marked(token: str, spare: int) -> list[int]:
    """The processes started with ``MARK=token`` in their environment, but this one and ``spare``."""
    entry, found = f"{MARK}={token}".encode(), []
    for process in os.scandir("/proc"):
        if process.name.isdigit() and int(process.name) not in (os.getpid(), spare):
            try:
                with open(f"/proc/{process.name}/environ", "rb") as f:
                    if entry in f.read().split(b"\0"):
                        found.append(int(process.name))
            except OSError:  # ended meanwhile, or not ours to read
                pass
    return found


def main(token: str, driver: int) -> None:
    sys.stdin.buffer.read()  # until the driver's end of the pipe closes
    for _ in range(2):  # again for any process started while the first ones were ended
        for pid in marked(token, driver):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # ended meanwhile
                pass


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C to the driver's terminal is the driver's to handle
    main(sys.argv[1], int(sys.argv[2]))
