"""Which precision to compute in: ``auto`` times float32 against bfloat16, once per machine and model.

CPU flags alone do not decide it. On a CPU with AVX-512 BF16 and AMX (TensorFlow's oneDNN), InceptionV3's
dream step runs faster in bfloat16, but EfficientNet-Lite0's runs slower (its depthwise convolutions have no
fast bfloat16 kernels there; figures: the Benchmarks page). Without native bfloat16 (AVX2 only) bfloat16 is
emulated, many times slower, and is never picked. So where the CPU has bfloat16 instructions, ``auto``
times a few steps of each precision on the model at hand and keeps the faster; the verdict is cached per
CPU, software versions and model in ``~/.cache/zoomdream/precision.json`` (``$XDG_CACHE_HOME`` is honoured).
On a GPU, bfloat16.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from zoomdream import backend
from zoomdream.ascent import Dreamer
from zoomdream.media.files import WriteFailed, atomic_write_bytes
from zoomdream.models import get_backbone, load_model, resolve_weights
from zoomdream.objective import make_objective

PRECISIONS = ("float32", "bfloat16")


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zoomdream" / "precision.json"


def machine_key(model: str) -> str:
    """What the verdict depends on: the CPU, the backend and its version, Keras, and the model."""
    import keras

    engine = backend.name()
    kernels = " (oneDNN)" if engine == "tensorflow" and backend.onednn_enabled() else ""
    version = getattr(sys.modules.get(engine), "__version__", "?")
    return (f"{backend.cpu_name()} | {os.cpu_count()} cores | {engine} {version}{kernels} | "
            f"keras {keras.__version__} | {model}")


def resolve(requested: str, model: str, weights: str | None = None) -> str:
    """``float32`` or ``bfloat16``: the requested one, or for ``auto`` the faster on this machine."""
    if requested != "auto":
        return requested
    if backend.has_accelerator():
        return "bfloat16"
    if not backend.native_bfloat16():
        return "float32"
    resolve_weights(get_backbone(model), weights)  # a wrong name or missing file fails now, not after timing
    path, key = cache_path(), machine_key(model)
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        print(f"zoomdream: timing float32 against bfloat16 for {model} on this CPU (once; kept in {path})",
              file=sys.stderr)
        cache[key] = probe(model, weights)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps(cache, indent=1).encode())
        except (OSError, WriteFailed):
            pass  # a read-only home only costs the probe again next time
    return cache[key]["precision"]


def probe(model: str, weights: str | None = None, size: int = 256, steps: int = 3) -> dict:
    """Seconds per dream step of a ``size``-px image in each precision (best of ``steps``), and the faster."""
    backbone = get_backbone(model)
    weights = weights if backbone.package else "random"  # speed does not depend on the values
    image = np.random.default_rng(0).uniform(-0.5, 0.5, (size, size, 3)).astype(np.float32)
    seconds = {}
    for precision in PRECISIONS:
        dreamer = Dreamer(load_model(model, weights, precision), make_objective(backbone.default_layers))
        times = []
        for _ in range(steps + 1):  # the first call compiles
            start = time.perf_counter()
            _, loss = dreamer.step(image, np.zeros(2, np.int32), 0.01)
            float(loss)
            times.append(time.perf_counter() - start)
        seconds[precision] = min(times[1:])
    return {"precision": min(seconds, key=seconds.get), "seconds_per_step": seconds}
