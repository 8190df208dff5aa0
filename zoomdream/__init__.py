"""zoomdream: DeepDream stills, infinite zooms and stylized video.

The public API is imported lazily, so `zoomdream --help` answers without starting TensorFlow.
"""
import os
from importlib import import_module


def _prefer_eigen_on_avx2() -> None:
    """On CPUs without AVX-512, TensorFlow's own (Eigen) kernels beat oneDNN's for the dream step (figures:
    the Benchmarks page). Where AVX-512 is present oneDNN stays on (it is also what runs bfloat16 natively).
    Must happen before TensorFlow loads; a user's own TF_ENABLE_ONEDNN_OPTS wins."""
    from zoomdream.backend import cpu_flags  # light: Keras loads only when a step is asked for

    flags = cpu_flags()
    if flags and "avx512f" not in flags:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


_prefer_eigen_on_avx2()

_API = {
    "Job": "zoomdream.config",
    "make_job": "zoomdream.config",
    "render": "zoomdream.runner",
    "render_image": "zoomdream.runner",
    "render_zoom": "zoomdream.runner",
    "render_video": "zoomdream.runner",
    "render_piece": "zoomdream.runner",
    "join_pieces": "zoomdream.runner",
    "load_model": "zoomdream.models",
    "Dreamer": "zoomdream.ascent",
    "DreamSettings": "zoomdream.ascent",
    "ZoomdreamError": "zoomdream.errors",
}

__all__ = list(_API)


def __getattr__(name):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'zoomdream' has no attribute {name!r}")
