"""Rendering past one machine with Ray: many jobs spread over workers, a clip rendered in chunks, or a zoom's
frames between its dreamed ones made beside its chain.

- ``flags``: the command line's cluster flags (imports nothing else: the CLI's answers stay fast);
- ``driver``: the entry points ``render_jobs``, ``render_chunks``, ``render_zoom``, the checks on the driver
  before any work and the plan of which frames each task makes;
- ``pool``: a ``Pool`` of workers with one progress counter, handing tasks to free workers;
- ``worker``: the Ray actor, its model loaded once, calling the runner;
- ``ray_api``: every use of Ray beyond actors (connecting, token authentication, sizing, failures).

Ray is the optional extra ``zoomdream[cluster]``: it is imported only when a cluster is asked for. The names
below are imported on first use, so ``zoomdream.cluster.flags`` costs the CLI nothing else.
"""
from importlib import import_module

_NAMES = {
    "add_flags": "flags", "requested": "flags", "EXTRA": "flags", "WARMUP": "flags",
    "main": "driver", "render_jobs": "driver", "render_chunks": "driver", "render_zoom": "driver",
    "check": "driver", "absolute": "driver", "keyed": "driver",
    "chunk_spans": "driver", "chunk_pieces": "driver", "chunk_streams": "driver",
    "Pool": "pool", "Task": "pool",
    "local_threads": "worker",
    "require_ray": "ray_api", "LOCAL_OBJECT_STORE": "ray_api", "RETRIES": "ray_api",
}

__all__ = list(_NAMES)


def __getattr__(name):
    if name in _NAMES:
        return getattr(import_module(f"{__name__}.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
