"""Seconds per zoom frame at the defaults, and how much the loop adds to the dream compute itself.

Renders ``--frames`` zoom frames (after frame 0, whose full still-image dream is excluded) to MP4 at each
size, timing the whole render and, inside it, the time spent in ``Dreamer.dream``. The overhead ratio,
end-to-end / dream-only, covers reading, warping, PNG checkpoints, state and encoding.

    python scripts/bench_zoom.py [--frames 100] [--sizes 512x512,1280x720]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def timed(dream, spent: list[float]):
    """``Dreamer.dream`` that adds the seconds of each call to ``spent``, the device's work included."""
    def wrapper(self, *a, **k):
        start = time.perf_counter()
        try:
            result = dream(self, *a, **k)
            if hasattr(result, "block_until_ready"):  # JAX returns before the device is done
                result.block_until_ready()
            return result
        finally:
            spent.append(time.perf_counter() - start)
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--sizes", default="512x512,1280x720")
    parser.add_argument("--model", default="efficientnet-lite0")
    args = parser.parse_args()

    from zoomdream import backend, runner
    from zoomdream.sinks import MemorySink
    from zoomdream.ascent import Dreamer
    from zoomdream.config import make_job
    from zoomdream.models import load_model
    from zoomdream.precision import resolve

    from bench_engine import cpu_summary

    precision = resolve("auto", args.model)
    print(f"cpu: {cpu_summary()}; backend {backend.name()}; precision {precision} (auto)")
    model = load_model(args.model, precision=precision)
    spent = []
    Dreamer.dream = timed(Dreamer.dream, spent)
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as work:
            job = make_job(dict(command="zoom", noise=True, size=size, frames=args.frames + 1, model=args.model,
                                output=os.path.join(work, "zoom.mp4")))
            spent.clear()
            marks = []
            marker = MemorySink(on_frame=lambda index, frame: marks.append(time.perf_counter()))
            runner.render(job, progress=False, model=model, sinks=(marker,))
            end = time.perf_counter()
            total = end - marks[0]  # frames 1..N, their checkpoints, and closing the MP4
            dreaming = sum(spent[1:])
            print(f"{size}: {total / args.frames:.2f} s/frame end to end, {dreaming / args.frames:.2f} s/frame "
                  f"dreaming ({job.octaves} octaves x {job.steps} steps); overhead ratio {total / dreaming:.3f}")


if __name__ == "__main__":
    main()
