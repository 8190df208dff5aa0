"""zoomdream: DeepDream stills, infinite zooms and stylized video.

The public API is imported lazily, so `zoomdream --help` answers without starting TensorFlow.
"""
from importlib import import_module

_API = {
    "Job": "zoomdream.config",
    "make_job": "zoomdream.config",
    "render_image": "zoomdream.loops",
    "render_zoom": "zoomdream.loops",
    "render_video": "zoomdream.loops",
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
