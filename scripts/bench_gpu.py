"""Seconds per dream frame in float32 and bfloat16, and the live-preview rate: the GPU figures.

Made for the JAX backend on a GPU machine without TensorFlow (``KERAS_BACKEND=jax``), it runs on any
backend and device. It needs no video I/O, so only keras, numpy and the backend travel.

- Seed-style frame: InceptionV3 (random weights), mixed3 + mixed5, mean loss, 3 octaves of scale 1.3 x 10
  steps, step 0.01, 512-px tiles, at 512x512 and 1920x1080, in each precision.
- Live preview: the default EfficientNet-Lite0 dreaming 1 octave x 3 steps per 512x512 frame, each frame
  fed back as the next input (the zoom loop without its file output), in frames per second.

    KERAS_BACKEND=jax python scripts/bench_gpu.py [--repeats 3] [--preview-frames 48] [--tile 512]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np


def seconds_per_frame(dreamer, settings, height: int, width: int, repeats: int) -> float:
    image = np.random.default_rng(0).uniform(-0.5, 0.5, (height, width, 3)).astype(np.float32)
    dreamer.dream(image, settings, seed=0)  # compile every octave size
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        dreamer.dream(image, settings, seed=0)  # returns numpy: the device has finished
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preview-frames", type=int, default=48)
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--tile", type=int, default=512, help="tile edge in pixels (the CLI's default is 512)")
    args = parser.parse_args()

    import keras

    from zoomdream import backend
    from zoomdream.ascent import Dreamer, DreamSettings
    from zoomdream.models import load_model
    from zoomdream.objective import make_objective

    device = "accelerator" if backend.has_accelerator() else f"CPU ({backend.cpu_name()})"
    print(f"keras {keras.__version__} on {backend.name()}, {device}, tile {args.tile}")
    seed = DreamSettings(octaves=3, octave_scale=1.3, steps=10, step_size=0.01)
    preview = DreamSettings(octaves=1, steps=3)
    for precision in args.precisions.split(","):
        model = load_model("inception_v3", weights="random", precision=precision)
        dreamer = Dreamer(model, make_objective("mixed3:1,mixed5:1", loss="mean"), tile=args.tile)
        for height, width in [(512, 512), (1080, 1920)]:
            seconds = seconds_per_frame(dreamer, seed, height, width, args.repeats)
            print(f"{precision} seed frame {width}x{height}: {seconds:.3f} s/frame")

        lite0 = load_model("efficientnet-lite0", precision=precision)
        lite = Dreamer(lite0, make_objective(lite0.backbone.default_layers), tile=args.tile)
        rng = np.random.default_rng(0)
        frame = rng.uniform(-0.25, 0.25, (512, 512, 3)).astype(np.float32)
        frame = lite.dream(frame, preview, rng=rng)  # compile
        start = time.perf_counter()
        for _ in range(args.preview_frames):
            frame = lite.dream(frame, preview, rng=rng)
        rate = args.preview_frames / (time.perf_counter() - start)
        print(f"{precision} live preview 512x512, 1 octave x 3 steps (efficientnet-lite0): {rate:.1f} frames/s")


if __name__ == "__main__":
    main()
