"""Ray nodes on this machine started as a running cluster is, for the tests and benchmarks of
``--cluster=ADDRESS``: a harness, not part of zoomdream."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import free_port

AGENT_PORTS = ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
               "runtime-env-agent-port")


class LocalNodes:
    """``count`` Ray nodes on this machine started as a running cluster is (``ray start --head``, then ``ray
    start --address``), each with ``cpus`` CPUs, its own ports and temp folder, in token mode with a token of
    their own (``address``, ``token``). ``env``: more environment for the nodes and so their workers
    (``PYTHONPATH``). ``close`` stops these nodes and nothing else."""

    def __init__(self, count: int = 2, cpus: int = 1, env: dict | None = None, timeout_s: float = 120):
        self.root = Path(tempfile.mkdtemp(prefix="zd-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.token = self.root / "token"
        self.token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token),
                    "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.env.pop("RAY_ADDRESS", None)
        port = free_port()
        self.address, self.nodes = f"127.0.0.1:{port}", []
        try:
            for i in range(count):
                where = (["--head", "--port", str(port), "--include-dashboard", "false", "--dashboard-port",
                          str(free_port()), "--ray-client-server-port", str(free_port())] if i == 0
                         else ["--address", self.address])
                self._start(i, cpus, where, timeout_s)
        except BaseException:
            self.close()
            raise

    def _start(self, i: int, cpus: int, where: list[str], timeout_s: float) -> None:
        """Start node ``i`` and wait for Ray to say it runs."""
        ports = [arg for name in AGENT_PORTS for arg in (f"--{name}", str(free_port()))]
        log_path = self.root / f"node{i}.log"
        with open(log_path, "wb") as log:
            self.nodes.append(subprocess.Popen(
                [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address", "127.0.0.1",
                 "--num-cpus", str(cpus), "--temp-dir", str(self.root / f"n{i}"), *where, *ports],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + timeout_s
        while b"Ray runtime started" not in log_path.read_bytes():
            if self.nodes[-1].poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"Ray node {i} did not start: {' / '.join(tail)}")
            time.sleep(0.2)

    def __enter__(self) -> LocalNodes:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def worker_pids(self) -> list[int]:
        """The zoomdream workers running on these nodes: descendants of their processes (Linux' /proc)."""
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                pass
        ours, grown = {node.pid for node in self.nodes}, True
        while grown:
            more = {pid for pid, parent in parents.items() if parent in ours} - ours
            ours, grown = ours | more, bool(more)
        pids = []
        for pid in sorted(ours):
            try:
                if b"ray::Worker" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                    pids.append(pid)
            except OSError:
                pass
        return pids

    def close(self) -> None:
        """Stop each node as Ctrl-C on ``ray start --block`` would; whatever is left of its session, by force."""
        for node in reversed(self.nodes):
            if node.poll() is None:
                node.terminate()
                try:
                    node.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(node.pid, signal.SIGKILL)  # its own session: only what this node started
            except OSError:
                pass
            node.wait()
        self.nodes = []
        shutil.rmtree(self.root, ignore_errors=True)
