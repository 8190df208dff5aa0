"""zoomdream: DeepDream stills, infinite zooms and stylized video.

The public API is imported lazily, so `zoomdream --help` answers without starting TensorFlow.
"""
import os
from importlib import import_module


def _prefer_eigen_on_avx2() -> None:
    """On CPUs without AVX-512, TensorFlow's own (Eigen) kernels beat oneDNN's for the dream step: 4% on
    InceptionV3 and 11% on EfficientNet-Lite0 per step, measured on a 2-core AVX2 machine, and VGG16 runs
    2.2x faster (oneDNN limited to AVX2 on an AVX-512 EPYC). Where AVX-512 is present oneDNN stays on (it is
    also what runs bfloat16 natively). Must happen before TensorFlow loads; a user's own
    TF_ENABLE_ONEDNN_OPTS wins.

    Whenever Eigen's kernels run, TensorFlow's pooling (BFC) CPU allocator is asked for too: without it each
    step's big tensors go to and from the OS afresh (VGG16 at 512x512: 0.5 M minor page faults and 0.9 s of
    system time per step, against 2 thousand and 0.01 s with it; the step 1.6x faster, InceptionV3's 1.2x;
    0.3 GB more peak memory on VGG16). With oneDNN, TensorFlow already pools. A user's own
    TF_CPU_ALLOCATOR_USE_BFC wins."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        flags = ""
    if flags and " avx512f" not in flags:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    if not _onednn_enabled():
        os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def _onednn_enabled() -> bool:
    """Whether TensorFlow runs its CPU kernels through oneDNN (its default on x86 Linux)."""
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").strip().lower() not in ("0", "false", "off")


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
