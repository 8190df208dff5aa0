"""Chunked video on a Ray cluster: seam quality, throughput, and what a long clip would take on many GPUs.

Default run (needs Ray, ``pip install '.[cluster]'``; starts a local cluster sized to this machine):

- Seam quality: the clip rendered in one piece here, and in ``--chunks`` chunks on the cluster with W warm-up
  frames (``--warmups``, default 0,4,8), the seams cut (warm-up discarded) or cross-faded (the default). For
  each consecutive pair of output frames, the warping error (Lai et al. 2018, ``flow.warping_error`` on that
  pair); printed: the mean and the largest over the steps of the seams (a cut: the step into a chunk; a fade:
  every step of the overlap and the one after it), each divided by the median over the steps inside chunks
  (1.0: a seam flickers like any other frame step; the target is <= 1.1), and the same at the same places of
  the one-piece render.
- Throughput: output frames per second of the chunked render on 1 worker x all threads against one worker per
  CPU x 1 thread (and the one-piece render in this process), counted from the first chunk handed out to the
  last frame kept (each worker's model already loaded; each chunk compiles its own dream step); the join's
  seconds apart.

``--frame-cost`` (no Ray needed; made to run on a GPU machine, any Keras backend): the parts of one video
frame at ``--size`` (default 1920x1080) with the video defaults: optical flow and blending, the dream, the PNG
kept and read back, and the H.264 encode of the join; then an estimate of the wall time of a 3-minute clip at
24 fps on 1, 8 and 64 workers that each cost that much per frame.

    python scripts/bench_cluster.py [--clip tests/data/example.mp4] [--max-size 256] [--chunks 4]
    KERAS_BACKEND=jax python scripts/bench_cluster.py --frame-cost [--size 1920x1080]
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's zoomdream, for this process and (through Ray) its workers


def pair_errors(frames: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """The warping error of each consecutive pair: entry t is the step from frame t - 1 to frame t."""
    from zoomdream.flow import warping_error

    return np.array([np.nan] + [warping_error(frames[t - 1:t + 1], sources[t - 1:t + 1])
                                for t in range(1, len(frames))])


def seam_ratios(errors: np.ndarray, spans: list[range], overlap: int) -> tuple[float, float]:
    """The mean and the largest warping error over the steps of the seams, over the median inside chunks."""
    seams = [t for s in spans[1:] for t in range(s.start - overlap, s.start + 1)]
    inside = [t for t in range(1, len(errors)) if t not in seams]
    median = np.median(errors[inside])
    return float(np.mean(errors[seams]) / median), float(np.max(errors[seams]) / median)


def pngs(folder: Path) -> np.ndarray:
    from zoomdream import media

    return np.stack([media.read_image(p) for p in media.list_frames(folder)])


def timed_chunks(job, chunks: int, warmup: int, pool, fade: bool = True) -> tuple[list[range], float, float]:
    """Render in chunks on ``pool``; returns the spans, the seconds from the first chunk handed out to the last
    frame kept, and the seconds after that (the join)."""
    from zoomdream import cluster

    marks = {}

    def seen(done, total):
        marks.setdefault("first", time.perf_counter())
        if done == total:
            marks.setdefault("last", time.perf_counter())

    start = time.perf_counter()
    spans = cluster.render_chunks(job, chunks, warmup=warmup, fade=fade, pool=pool, progress=False,
                                  on_progress=seen)
    end = time.perf_counter()
    return spans, marks.get("last", end) - start, end - marks.get("last", end)


def cluster_figures(args) -> None:
    import ray

    from zoomdream import backend, cluster, media, runner
    from zoomdream.config import make_job
    from zoomdream.models import load_model

    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    settings = dict(command="video", input=args.clip, max_size=args.max_size, precision="float32")
    if args.duration:
        settings["duration"] = args.duration
    cpus = os.cpu_count()
    print(f"{backend.cpu_name()}, {cpus} CPUs; clip {args.clip} at --max-size {args.max_size}, video defaults "
          f"(EfficientNet-Lite0, 2 octaves x 8 steps), float32")

    whole = make_job({**settings, "output": str(work / "whole.mp4"), "frames_dir": str(work / "whole")})
    start = time.perf_counter()
    runner.render(whole, progress=False, model=load_model(whole.model, precision="float32"))
    one_piece_s = time.perf_counter() - start
    reference = pngs(work / "whole")
    sources = np.stack(list(media.read_video(args.clip, duration=args.duration, max_size=args.max_size)))
    frames = len(reference)
    whole_errors = pair_errors(reference, sources)
    print(f"one piece in this process: {frames} frames in {one_piece_s:.1f} s, {frames / one_piece_s:.2f} "
          f"frames/s (model load and compile included)")

    def warm(pool):  # every worker loads its model before anything is timed
        short = make_job({**settings, "duration": 0.2, "output": str(work / f"warm{len(pool.actors)}.mp4")})
        timed_chunks(short, len(pool.actors), 0, pool)

    ray.init(include_dashboard=False, object_store_memory=cluster.LOCAL_OBJECT_STORE, log_to_driver=False,
             logging_level="ERROR")
    rates = {}
    with cluster.Pool(workers=cpus) as pool:
        warm(pool)
        print(f"\nseams: {args.chunks} chunks on {len(pool.actors)} workers x {pool.threads} thread(s)")
        print("W   seams  seam/inside: mean  max   one piece there: mean  max   chunk frames/s  join s  "
              "mean |chunked - one piece|")
        for warmup in args.warmups:
            for fade in (False, True) if warmup else (False,):
                name = f"w{warmup}{'fade' if fade else 'cut'}"
                job = make_job({**settings, "output": str(work / f"{name}.mp4"), "frames_dir": str(work / name)})
                spans, chunk_s, join_s = timed_chunks(job, args.chunks, warmup, pool, fade)
                chunked = pngs(work / name)
                overlap = warmup if fade else 0
                mean, top = seam_ratios(pair_errors(chunked, sources), spans, overlap)
                there = seam_ratios(whole_errors, spans, overlap)
                rates[(len(pool.actors), pool.threads, warmup, fade)] = frames / chunk_s
                print(f"{warmup:<3d} {'fade' if fade else 'cut':5s} {mean:>17.3f} {top:>5.2f}   {there[0]:>21.3f} "
                      f"{there[1]:>4.2f}   {frames / chunk_s:>14.2f}  {join_s:>6.1f}  "
                      f"{np.abs(chunked.astype(int) - reference).mean():.1f}")
    warmup = args.warmups[-1]
    with cluster.Pool(workers=1) as pool:
        warm(pool)
        job = make_job({**settings, "output": str(work / "one-worker.mp4")})
        _, chunk_s, join_s = timed_chunks(job, args.chunks, warmup, pool)
        rates[(1, pool.threads, warmup, True)] = frames / chunk_s
    ray.shutdown()
    print(f"\nthroughput, {args.chunks} chunks, W = {warmup}, faded (output frames per second of the chunk phase):")
    for (workers, threads, w, fade), rate in sorted(rates.items()):
        if (w, fade) == (warmup, True):
            print(f"  {workers} worker(s) x {threads} thread(s): {rate:.2f} frames/s")
    print(f"  one piece in this process ({cpus} threads): {frames / one_piece_s:.2f} frames/s")


def frame_cost(args) -> None:
    import cv2

    from zoomdream import backend, media, precision
    from zoomdream.ascent import to_uint8, to_unit
    from zoomdream.config import make_job
    from zoomdream.engine import build_dreamer, resolve_engine
    from zoomdream.flow import coherent_init, motion_between, temporal_blend
    from zoomdream.loops.common import constant_dream
    from zoomdream.models import load_model

    width, height = (int(v) for v in args.size.split("x"))
    device = "accelerator" if backend.has_accelerator() else f"CPU ({backend.cpu_name()})"
    job = make_job(dict(command="video"))  # the video defaults
    start = time.perf_counter()
    job = make_job({"command": "video", "precision": precision.resolve(job.precision, job.model, job.weights)})
    engine = resolve_engine(job)
    dreamer = build_dreamer(engine, load_model(engine.model, engine.weights, job.precision))
    dream = constant_dream(job)
    photo = cv2.resize(media.read_image(ROOT / "samples" / "chelsea.png"), (width + 8, height))
    before, source = photo[:, 8:], photo[:, :-8]  # the camera pans 8 px a frame
    previous = to_uint8(dreamer.dream(to_unit(before), dream, seed=0))  # compiles every octave's shape
    startup = time.perf_counter() - start
    print(f"{width}x{height} video frame, defaults ({engine.model}, {dream.octaves} octaves x {dream.steps} steps, "
          f"{job.precision}, tile {engine.tile}), keras on {backend.name()}, {device}, {os.cpu_count()} CPUs")

    def median_s(work, repeats=args.repeats):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = work()
            times.append(time.perf_counter() - t)
        return statistics.median(times), out

    flow_s, (motion, init) = median_s(lambda: (lambda m: (m, coherent_init(previous, before, source, motion=m)))(
        motion_between(before, source)))
    dream_s, dreamed = median_s(lambda: to_uint8(dreamer.dream(to_unit(init), dream, seed=0)))
    blend_s, frame = median_s(lambda: temporal_blend(dreamed, previous, motion, job.smooth))
    folder = Path(tempfile.mkdtemp(prefix="bench-frame-"))
    write_s, _ = median_s(lambda: media.write_image(folder / "f.png", frame))
    read_s, _ = median_s(lambda: media.read_image(folder / "f.png"))
    start = time.perf_counter()
    with media.VideoWriter(folder / "join.mp4", 24.0) as writer:
        for t in range(args.encode_frames):
            writer.write(np.roll(frame, 8 * t, axis=1))
    encode_s = (time.perf_counter() - start) / args.encode_frames
    per_frame = flow_s + dream_s + blend_s  # the PNG is kept on a thread while the next frame dreams
    join_frame = read_s + encode_s
    print(f"per frame: flow + blend {flow_s + blend_s:.3f} s, dream {dream_s:.3f} s, PNG write {write_s:.3f} s "
          f"(overlapped), worker total {per_frame:.3f} s; join: PNG read {read_s:.3f} s + H.264 encode "
          f"{encode_s:.3f} s = {join_frame:.3f} s; start-up (model load, compile) {startup:.1f} s")

    frames, warmup = 3 * 60 * 24, 8
    print(f"\nestimate, a 3-minute clip at 24 fps ({frames} frames), one chunk per worker, W = {warmup}, every "
          f"worker as fast as this one:")
    print("workers   chunk phase   join    total    speed-up")
    alone = startup + frames * per_frame + frames * join_frame
    for workers in (1, 8, 64):
        chunk = startup + (math.ceil(frames / workers) + (warmup if workers > 1 else 0)) * per_frame
        total = chunk + frames * join_frame
        print(f"{workers:>7d}   {chunk / 60:>9.1f} m   {frames * join_frame / 60:>4.1f} m   {total / 60:>5.1f} m   "
              f"{alone / total:>6.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(ROOT / "tests" / "data" / "example.mp4"))
    parser.add_argument("--max-size", type=int, default=256)
    parser.add_argument("--duration", type=float, default=None, help="seconds of the clip (default: all)")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--warmups", default="0,4,8", help="warm-up frames to compare (the last is the default's)")
    parser.add_argument("--frame-cost", action="store_true", help="time one video frame's parts and estimate a "
                                                                  "long clip on many workers")
    parser.add_argument("--size", default="1920x1080", help="--frame-cost frame size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encode-frames", type=int, default=48)
    args = parser.parse_args()
    args.warmups = [int(w) for w in args.warmups.split(",")]
    frame_cost(args) if args.frame_cost else cluster_figures(args)


if __name__ == "__main__":
    main()
