"""Everything that leans on Ray beyond its actors: importing it, connecting (a local cluster, or a running one
with its token authentication, which reads Ray's private ``ray._raylet``), sizing the workers to the cluster's
resources, and a worker's failure as one line. A Ray upgrade that breaks something breaks it here."""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid

from zoomdream.cluster.flags import EXTRA
from zoomdream.cluster.watchdog import MARK
from zoomdream.errors import ZoomdreamError, first_line, os_error_text

RETRIES = 3  # restarts of a dead worker, and retries of the chunk or job it was rendering
LOCAL_OBJECT_STORE = 128 * 2 ** 20  # frames travel as files: the object store holds only small values


def require_ray():
    """Ray, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ZoomdreamError(f"rendering on a cluster needs Ray, which is not installed (run: {EXTRA})") from None
    return ray


def connect(ray, address: str | None) -> bool:
    """Connect to ``address`` or ``$RAY_ADDRESS``, else start a local cluster; True where it was started here.
    A Ray already initialised in this process is used as it is."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _reachable(address)
        authenticate(address)
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: never report usage
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        if address:
            ray.init(address=address, **quiet)  # this driver's connection; the cluster itself stays up
        else:
            token = uuid.uuid4().hex
            # MARK is inherited by every process of the cluster (see zoomdream.cluster.watchdog); SPT_NOENV keeps it
            # readable there: without it, the process title a Ray agent sets overwrites its environment's memory
            marks = {MARK: token, "SPT_NOENV": "1"}
            kept = {name: os.environ.get(name) for name in marks}
            os.environ.update(marks)
            try:
                ray.init(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE, **quiet)
            finally:
                for name, value in kept.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
            _watch(token)
        if main_thread:  # Ray installs its own, which exits at once: SIGTERM stops a render like Ctrl-C
            signal.signal(signal.SIGTERM, on_sigterm)
        return True
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at '{address}'" if address else "a local Ray cluster"
        hint = ("check that ADDRESS is the head's address and port that `ray start --head` printed, and that "
                "this machine has the same Ray version as the cluster" if address else "see the Ray logs")
        raise ZoomdreamError(f"cannot start or reach {where}: {first_line(e)} ({hint})") from None


_WATCHDOG: list[subprocess.Popen] = []  # the watchdog of the local cluster started here, holding our pipe


def _watch(token: str) -> None:
    """Have ``zoomdream.cluster.watchdog`` end the local cluster marked with ``token`` when this process ends,
    killed or not: Ray's agents outlived a driver killed with -9 by 60-120 s. Linux only (it reads /proc)."""
    for old in _WATCHDOG:  # a cluster started earlier here was shut down: its watchdog ends what is left
        old.stdin.close()
    _WATCHDOG.clear()
    if os.path.isdir("/proc/self"):
        package = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")]))}
        _WATCHDOG.append(subprocess.Popen([sys.executable, "-m", "zoomdream.cluster.watchdog", token, str(os.getpid())],
                                          stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, env=env, start_new_session=True))


def _host_port(address: str) -> tuple[str, int] | None:
    """HOST and PORT of a HOST:PORT address (``ray://`` too); None for "auto", "local" (Ray finds those)."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def _reachable(address: str) -> None:
    """A HOST:PORT address (``ray://`` too) must accept a connection: Ray itself would retry for minutes."""
    if _host_port(address) is None:
        return
    try:
        socket.create_connection(_host_port(address), timeout=10).close()
    except OSError as e:
        raise ZoomdreamError(f"cannot reach the Ray cluster at '{address}': {e.strerror or e} (check the address and "
                             f"port, start the cluster with `ray start --head`, or leave out ADDRESS for a local "
                             f"cluster)") from None


def authenticate(address: str) -> None:
    """Meet Ray's token authentication before ``ray.init``, which would otherwise retry for half a minute and
    blame the address. A head started with ``ray start --head`` asks for a token whenever its machine has one
    (``~/.ray/auth_token``, which any local ``ray.init`` creates), but a driver connecting to an explicit
    address sends none unless ``RAY_AUTH_MODE=token``. So: ask the head once without a token; where it refuses,
    offer this machine's token, read as ``ray get-auth-token`` reads it (``$RAY_AUTH_TOKEN``, the file
    ``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``), and where the head accepts it, connect in token mode
    as ``RAY_AUTH_MODE=token`` would. ``RAY_AUTH_MODE=disabled`` never sends the token."""
    where = _host_port(address)
    if where is None or "://" in address:  # found by Ray itself, or a Ray Client address (not the head's GCS)
        return
    if _gcs_refuses(where, None) is not True:
        return  # no token asked (or no answer: ray.init reports that)
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    token = None if mode == "disabled" else _local_token()
    fix = ("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token, which `ray get-auth-token` prints "
           "on its head, or copy it to ~/.ray/auth_token here")
    if token is None:
        raise ZoomdreamError(f"the Ray cluster at '{address}' asks for an authentication token and "
                             f"{'RAY_AUTH_MODE=disabled sends none' if mode == 'disabled' else 'this machine has none'}"
                             f" ({fix})")
    if _gcs_refuses(where, token):
        raise ZoomdreamError(f"the Ray cluster at '{address}' refused this machine's authentication token ({fix})")
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray._raylet import Config

    Config.initialize("")  # Ray reads its mode once: read it again, as Ray's own CLI does when it enables tokens


def _local_token() -> str | None:
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:  # a Ray without token authentication
        return None
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # read now, as a fresh `ray` command would
    return loader.get_raw_token(ignore_auth_mode=True) if loader.has_token(ignore_auth_mode=True) else None


def _gcs_refuses(where: tuple[str, int], token: str | None) -> bool | None:
    """Whether the Ray head (its GCS, on gRPC) at ``where`` refuses a request with ``token`` (None: without
    one) as unauthenticated; None where it gives no answer to go by."""
    try:
        import grpc
    except ImportError:
        return None
    host, port = where
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(f"[{host}]:{port}" if ":" in host else f"{host}:{port}") as channel:
        try:
            channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")(b"", timeout=10, metadata=metadata)
            return False
        except grpc.RpcError as e:
            return True if e.code() == grpc.StatusCode.UNAUTHENTICATED else None


def layout(ray, workers: int | None, tasks: int | None) -> tuple[int, float, float, int]:
    """How many workers, the CPUs and GPUs each reserves, and its compute threads: one worker per GPU where
    the cluster has GPUs, else one per task up to one per CPU; the CPUs are shared out so each worker fits on
    one machine."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cpus = [int(n.get("CPU", 0)) for n in nodes]
    gpus = sum(int(n.get("GPU", 0)) for n in nodes)
    count = workers or gpus or max(1, min(tasks or sum(cpus), sum(cpus)))
    threads = max(1, sum(cpus) // count)
    while threads > 1 and sum(c // threads for c in cpus) < count:
        threads -= 1
    share = threads if sum(c // threads for c in cpus) >= count else sum(cpus) / count
    return count, share, min(1.0, gpus / count), threads


def failure(ray, error: BaseException, name: str) -> BaseException:
    """A worker's failure as one ZoomdreamError line naming the job or chunk; Ctrl-C stays as it is."""
    if isinstance(error, KeyboardInterrupt):
        return error
    cause = getattr(error, "cause", None) or error
    if isinstance(error, ray.exceptions.RayActorError):
        return ZoomdreamError(f"{name}: a worker died {RETRIES + 1} times rendering it (see the Ray logs; kept "
                              f"frames stay: run again with --resume)")
    if isinstance(cause, ZoomdreamError):
        return ZoomdreamError(f"{name}: {cause}")
    if isinstance(cause, OSError):
        return ZoomdreamError(f"{name}: " + os_error_text(cause, "check that every worker sees the shared folder, "
                                                                 "its permissions and free space"))
    return ZoomdreamError(f"{name}: {type(cause).__name__}: {first_line(cause)}")
