"""Time one dream frame with zoomdream and with the TensorFlow tutorial's code, on the same feature model.

Workload (the seed's): a 512x512 input, InceptionV3 with random weights, layers mixed3 + mixed5 with the
tutorial's mean loss, 3 octaves of scale 1.3 from the smallest up, 10 steps each, step 0.01, 512-px tiles.
Both run alternately in one process after a warm-up; the medians are compared. zoomdream runs at
``--precision`` (default ``auto``, as the command line does); the baseline runs in float32, as written.
Also prints the CPU's features, float32 and bfloat16 matmul rates, the engine's achieved FLOP/s,
zoomdream's pixel-steps per second at 512x512 and 1920x1080 (every pixel covered every step) and peak
memory.

    python scripts/bench_engine.py [--repeats 3] [--baseline ../shared/baselines/seed_tutorial.py] [--uhd]

The last line is ``ratio=<zoomdream median / baseline median>`` (absent without a baseline file).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED_GFLOP_PER_FRAME = 832  # forward + input gradient of the seed workload


def cpu_summary() -> str:
    from zoomdream.backend import cpu_flags, cpu_name

    flags = cpu_flags()
    wanted = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"]
    return f"{cpu_name()}; {os.cpu_count()} cores; " + " ".join(f for f in wanted if f in flags)


def matmul_gflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    import tensorflow as tf

    a = tf.random.uniform((n, n), dtype=tf.float32)
    a = tf.cast(a, dtype)
    tf.linalg.matmul(a, a).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        tf.linalg.matmul(a, a).numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def load_baseline(path: Path):
    spec = importlib.util.spec_from_file_location("seed_tutorial", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SeedTutorial


def pixel_steps_per_second(dreamer, height: int, width: int, steps: int = 5) -> float:
    rng = np.random.default_rng(0)
    image = rng.uniform(-0.5, 0.5, (height, width, 3)).astype(np.float32)
    image, loss = dreamer.step(image, rng.integers(0, (height, width)), 0.01)  # compile this size
    float(loss)
    start = time.perf_counter()
    for _ in range(steps):
        image, loss = dreamer.step(image, rng.integers(0, (height, width)), 0.01)
    float(loss)
    return height * width * steps / (time.perf_counter() - start)


def uhd_child(precision: str) -> None:
    """One 3840x2160 step in a fresh process, printing its peak memory."""
    from zoomdream.ascent import Dreamer
    from zoomdream.models import load_model
    from zoomdream.objective import make_objective

    dreamer = Dreamer(load_model("inception_v3", weights="random", precision=precision),
                      make_objective("mixed3,mixed5", "mean"), 512)
    rate = pixel_steps_per_second(dreamer, 2160, 3840, steps=1)
    print(f"3840x2160: {rate / 1e6:.3f} Mpixel-steps/s, peak memory {peak_rss_gb():.2f} GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed frames per side (default 3)")
    parser.add_argument("--baseline", default=str(ROOT.parent / "shared" / "baselines" / "seed_tutorial.py"))
    parser.add_argument("--precision", default="auto", choices=("float32", "bfloat16", "auto"),
                        help="zoomdream's precision (default auto, as the CLI); the baseline is always float32")
    parser.add_argument("--uhd", action="store_true", help="also measure a 3840x2160 step's peak memory")
    parser.add_argument("--uhd-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.uhd_child:
        return uhd_child(args.precision)

    import keras

    from zoomdream import backend
    from zoomdream.ascent import Dreamer, DreamSettings
    from zoomdream.frames.levels import to_uint8
    from zoomdream.models import load_model
    from zoomdream.objective import make_objective
    from zoomdream.precision import resolve

    precision = resolve(args.precision, "inception_v3", "random")
    print(f"cpu: {cpu_summary()}")
    print(f"keras {keras.__version__} on {backend.name()}; precision {precision}; "
          f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(default)')}")
    if backend.name() == "tensorflow":
        print(f"matmul 2048: float32 {matmul_gflops('float32'):.0f} GFLOP/s, "
              f"bfloat16 {matmul_gflops('bfloat16'):.0f} GFLOP/s")

    model = load_model("inception_v3", weights="random", precision=precision)
    dreamer = Dreamer(model, make_objective("mixed3:1,mixed5:1", loss="mean"), tile=512)
    settings = DreamSettings(octaves=3, octave_scale=1.3, steps=10, step_size=0.01)
    image = np.random.default_rng(0).uniform(0, 255, (512, 512, 3)).astype(np.uint8)
    unit = image.astype(np.float32) / 127.5 - 1.0

    def ours():
        return to_uint8(dreamer.dream(unit, settings, seed=0))

    sides = {"zoomdream": ours}
    if backend.name() != "tensorflow":
        print(f"the baseline is TensorFlow code: timing zoomdream alone on {backend.name()}")
    elif Path(args.baseline).is_file():
        features = dreamer.feature_model
        if precision != "float32":  # the seed's code as written runs float32; same weights
            features = load_model("inception_v3", weights="random").feature_model(dreamer.objective.layers)
            features.set_weights(dreamer.feature_model.get_weights())
        baseline = load_baseline(Path(args.baseline))(features)
        sides["baseline"] = lambda: np.asarray(baseline.frame(image, steps_per_octave=10, step_size=0.01,
                                                              octaves=range(-2, 1), octave_scale=1.3,
                                                              tile_size=512))
    else:
        print(f"baseline {args.baseline} not found: timing zoomdream alone")

    for run in sides.values():  # warm-up: compile every octave size
        run()
    times = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name}: median {median:.2f} s/frame over {args.repeats} "
              f"({', '.join(f'{t:.2f}' for t in times[name])}); "
              f"{SEED_GFLOP_PER_FRAME / median:.0f} GFLOP/s achieved")

    small = pixel_steps_per_second(dreamer, 512, 512)
    large = pixel_steps_per_second(dreamer, 1080, 1920)
    print(f"pixel-steps/s: 512x512 {small / 1e6:.3f} M, 1920x1080 {large / 1e6:.3f} M "
          f"({large / small:.2f}x of 512x512)")
    print(f"peak memory (this process): {peak_rss_gb():.2f} GB")
    if args.uhd:
        child = subprocess.run([sys.executable, __file__, "--uhd-child", "--precision", precision],
                               capture_output=True, text=True)
        print(child.stdout.strip() or child.stderr.strip().splitlines()[-1])
    if "baseline" in medians:
        print(f"ratio={medians['zoomdream'] / medians['baseline']:.3f}")


if __name__ == "__main__":
    main()
