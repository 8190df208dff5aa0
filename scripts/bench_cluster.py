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
kept and read back, the H.264 encode (each chunk's, on its worker) and the join's concatenation; then an estimate of the wall time of a 3-minute clip at
24 fps on 1, 8 and 64 workers that each cost that much per frame.

``--join``: today's join (every frame read back from PNG and encoded on one machine, with x264's medium preset as
it was then; also with today's veryfast) against the new (each chunk's own
H.264 stream joined without re-encoding, the cross-faded seams encoded), in turn ``--repeats`` times on the
same ``--chunks``-chunk render of the 1280x720 test clip played ``--loops`` times: the new as the cluster runs
it (each seam encoded on its worker at once, then the copy; the longest seam counted) and on one machine (the
join encoding every seam); the chunk's encode per frame and the concatenation per frame; last line
``join_ratio=`` (the new as on the cluster over today's; target <= 0.2).

``--nodes N``: the chunked render on N Ray nodes started here with ``ray start`` (a real running cluster, in
token mode), one worker killed mid-chunk, against the same render on a local cluster; last line ``equal=``.

``--estimate STARTUP,FRAME,ENCODE,READ,CONCAT``: the 1/8/64-worker estimate from parts measured elsewhere.

``--zoom``: a noise zoom with ``--interpolate 4`` (``--zoom-size``, ``--zoom-frames``, zoom defaults) rendered in
this process, then on 1 and on 2 workers (each worker's model loaded first): wall times, the frames between
dreamed ones made apart from the chain, and whether each output decodes to the single render's frames
(``equal=``).

    python scripts/bench_cluster.py [--clip tests/data/example.mp4] [--max-size 256] [--chunks 4]
    KERAS_BACKEND=jax python scripts/bench_cluster.py --frame-cost [--size 1920x1080]
    python scripts/bench_cluster.py --join [--loops 8]
    python scripts/bench_cluster.py --nodes 2 [--max-size 64]
    python scripts/bench_cluster.py --zoom [--zoom-size 192x192 --zoom-frames 97]
"""
from __future__ import annotations

import argparse
import itertools
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


def looped_clip(folder: Path, loops: int) -> Path:
    """The 1 s, 1280x720 test clip (with its audio) played ``loops`` times over, as one file (stream copy)."""
    from zoomdream.media.ffmpeg import file_arg, run_ffmpeg

    clip = folder / f"bunny-x{loops}.mkv"
    run_ffmpeg(["-y", "-stream_loop", str(loops - 1), "-i", file_arg(ROOT / "tests" / "data" /
                "big_buck_bunny_432_433.webm"), "-c", "copy", file_arg(clip)], "cannot loop the test clip", "")
    return clip


def old_join(job, frames: Path, model, preset: str) -> None:
    """The join before each chunk kept its own stream: every frame read back from the PNG the chunk kept of it
    and encoded here with x264's ``preset`` (medium then; veryfast since the pipelined render)."""
    from zoomdream import media, runner
    from zoomdream.sinks import EncoderSink

    job, source, output = runner.prepare(job, model)
    final = EncoderSink(output.path, source.fps, crf=output.crf, preset=preset, **source.audio)
    try:
        for index, path in enumerate(media.list_frames(frames)):
            final.write(index, media.read_image(path))
        final.close()
    finally:
        source.close()


def as_pngs(job, pieces: list[Path], model, folder: Path) -> Path:
    """The joined frames as PNG files, as the chunks kept them for the old join (written here, not timed)."""
    from zoomdream import media, runner

    job, source, _ = runner.prepare(job, model)  # the job as the pieces were rendered with it
    source.close()
    media.make_folder(folder)
    for part in runner.join_parts(runner.piece_spans(job, pieces, source.total)):
        for index, frame in runner.part_frames(pieces, part):
            media.write_image(media.frame_path(folder, index), frame)
    return folder


def join_figures(args) -> None:
    """Today's join against the new on the same ``--chunks``-chunk 1280x720 render, alternated."""
    from zoomdream import cluster, media, runner, store
    from zoomdream.config import make_job
    from zoomdream.models import load_model

    work = Path(tempfile.mkdtemp(prefix="bench-join-"))
    clip = looped_clip(work, args.loops)
    # The join's cost does not depend on how the frames were dreamed: steps = 0 (flow and blending only).
    # The last half second is left out: a looped clip's last frame may not decode (its length says one more).
    job = make_job(dict(command="video", input=str(clip), output=str(work / "joined.mp4"), steps=0, octaves=1,
                        precision="float32", duration=args.loops - 0.5))
    model = load_model(job.model, precision="float32")
    total = cluster.check(job)[0]  # as the render counts them
    spans = cluster.chunk_spans(total, args.chunks)
    pieces = cluster.chunk_pieces(spans, cluster.WARMUP)
    streams = cluster.chunk_streams(pieces)
    folders = []
    start = time.perf_counter()
    for k, ((a, b, w), stream) in enumerate(zip(pieces, streams)):
        folders.append(runner.render_piece(job, range(a, b), work / f"chunk{k}", warmup=w, progress=False,
                                           model=model, stream=stream and range(*stream)))
    render_s = time.perf_counter() - start
    pngs = as_pngs(job, folders, model, work / "pngs")
    kept = [frame for _, frame in itertools.islice(runner.part_frames(folders, (range(*streams[0]), 0, False)), 48)]
    start = time.perf_counter()
    with media.VideoWriter(work / "encode.mp4", 24.0) as writer:
        for frame in kept:
            writer.write(frame)
    encode_s = (time.perf_counter() - start) / len(kept)
    seams = sum(len(frames) for frames, _, faded in runner.join_parts([p[:2] for p in pieces]) if faded)
    print(f"{total} frames at 1280x720 ({clip.name}, audio), {args.chunks} chunks, W = {cluster.WARMUP}: "
          f"{seams} frames cross-faded at the seams; pieces rendered (steps 0) in {render_s:.0f} s; a chunk's "
          f"H.264 encode {encode_s * 1000:.0f} ms/frame")
    def new_join(job, folders, model):  # as on the cluster: each worker its seam, at once; then the copy
        seams = []
        for folder in folders:
            start = time.perf_counter()
            runner.encode_seams(job, folders, model, folder=folder)
            seams.append(time.perf_counter() - start)
        start = time.perf_counter()
        runner.join_pieces(job, folders, model)
        return max(seams), time.perf_counter() - start

    times = {"old": [], "old, veryfast": [], "alone": [], "cluster": []}
    for _ in range(args.repeats):
        for name in times:
            for seam in work.glob("chunk*/joined-*.mp4"):
                seam.unlink()  # the new join encodes its seams each time
            start = time.perf_counter()
            if name.startswith("old"):
                old_join(job, pngs, model, "veryfast" if "veryfast" in name else "medium")
            elif name == "alone":  # one machine: the join encodes every seam itself
                runner.join_pieces(job, folders, model)
            else:
                seam_s, copy_s = new_join(job, folders, model)
            times[name].append(time.perf_counter() - start if name != "cluster" else seam_s + copy_s)
            assert media.probe_video(job.output).n_frames == total
    old, fast, alone, new = (statistics.median(values) for values in times.values())
    listed = {name: ", ".join(f"{t:.2f}" for t in values) for name, values in times.items()}
    print(f"join, median of {args.repeats}: every frame read and encoded {old:.2f} s ({listed['old']}; with "
          f"today's faster x264 preset {fast:.2f} s: {listed['old, veryfast']}); streams "
          f"joined, seams encoded by the join {alone:.2f} s ({listed['alone']}); as on the cluster (each seam on "
          f"its worker at once, then the copy) {new:.2f} s ({listed['cluster']}); load {os.getloadavg()[0]:.1f}")
    print(f"one machine: {alone / old:.3f} of today's join")
    first, end = store.read_state(folders[0])["segments"][0]  # the first chunk's first segment
    concat_s = concat_cost(store.segment_path(folders[0], first), end - first)
    print(f"streams concatenated without re-encoding: {concat_s * 1000:.2f} ms a frame")
    print(f"against the old join with today's x264 preset: {new / fast:.3f}")
    print(f"join_ratio={new / old:.3f}")


def nodes_figures(args) -> None:
    """The chunked render on ``--nodes`` Ray nodes started here as a running cluster is (``ray start``), one
    worker killed mid-chunk, against the same chunks on a local cluster; prints ``equal=``."""
    from zoomdream import cluster, media
    from zoomdream.config import make_job

    sys.path.insert(0, str(ROOT / "tests"))  # the harness that starts Ray nodes lives with the tests
    from ray_nodes import LocalNodes

    work = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    settings = dict(command="video", input=args.clip, max_size=args.max_size, duration=args.duration or 1.0,
                    precision="float32")
    cpus = max(1, (os.cpu_count() or 1) // args.nodes)
    local = make_job({**settings, "output": str(work / "local.mp4"), "frames_dir": str(work / "local")})
    start = time.perf_counter()
    cluster.render_chunks(local, args.chunks, workers=args.nodes, progress=False)
    local_s = time.perf_counter() - start
    job = make_job({**settings, "output": str(work / "nodes.mp4"), "frames_dir": str(work / "nodes")})
    start = time.perf_counter()
    with LocalNodes(args.nodes, cpus=cpus, env={"PYTHONPATH": str(ROOT)}) as nodes:
        up_s = time.perf_counter() - start
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(nodes.token)  # as on a machine of that cluster
        killed = []

        def kill_once(done, total):
            pids = nodes.worker_pids()
            if done >= 1 and not killed and pids:
                killed.append(pids[0])
                os.kill(pids[0], 9)  # a worker dies mid-chunk

        start = time.perf_counter()
        cluster.render_chunks(job, args.chunks, address=nodes.address, workers=args.nodes, progress=False,
                              on_progress=kill_once)
        nodes_s = time.perf_counter() - start
    frames = len(media.list_frames(work / "local"))
    equal = bool(np.array_equal(pngs(work / "nodes"), pngs(work / "local")))
    print(f"{frames} frames of {args.clip} at --max-size {args.max_size} in {args.chunks} chunks: on a local cluster "
          f"of {args.nodes} workers {local_s:.1f} s; on {args.nodes} nodes started with `ray start` ({cpus} CPU "
          f"each, up in {up_s:.0f} s) {nodes_s:.1f} s, worker {killed[0] if killed else None} killed mid-chunk; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"equal={equal}")


def zoom_figures(args) -> None:
    """Wall time of a zoom with --interpolate 4: in this process, then its in-betweens on workers."""
    import ray

    from zoomdream import backend, cluster, media, runner
    from zoomdream.config import make_job
    from zoomdream.models import load_model

    work = Path(tempfile.mkdtemp(prefix="bench-zoom-"))
    settings = dict(command="zoom", noise=True, size=args.zoom_size, frames=args.zoom_frames, interpolate=4,
                    zoom="1.04", angle="0.3", precision="float32")
    print(f"{backend.cpu_name()}, {os.cpu_count()} CPUs; zoom --noise --size {args.zoom_size} --frames "
          f"{args.zoom_frames} --interpolate 4 (zoom defaults: 2 octaves x 5 steps), float32")
    single = make_job({**settings, "output": str(work / "single.mp4")})
    model = load_model(single.model, precision="float32")
    start = time.perf_counter()
    runner.render(single, progress=False, model=model)
    print(f"in this process: {time.perf_counter() - start:.1f} s (model loaded before)")
    reference = np.stack(list(media.read_video(single.output)))
    keys, spans = runner.key_plan(single, model)
    start = time.perf_counter()
    runner.render_keys(single, work / "keys", model=model, progress=False)
    chain_s = time.perf_counter() - start
    between_s = []
    for span in spans:
        start = time.perf_counter()
        runner.render_between(single, work / "keys", span, runner.stream_path(work, span), model=model)
        between_s.append(time.perf_counter() - start)
    print(f"  its parts in this process: the chain of {len(keys)} dreamed frames {chain_s:.1f} s; the {len(spans)} "
          f"segments' frames made and encoded {sum(between_s):.1f} s ({sum(between_s) / len(reference) * 1000:.0f} "
          f"ms a frame); with the segments on other workers as the chain goes on, about {chain_s + between_s[-1]:.1f} "
          f"s")
    between_ms, encode_ms, png_ms = between_cost(model, args.size)
    print(f"  a frame between two dreamed ones at {args.size} (--size), in this process: made {between_ms:.0f} ms, "
          f"H.264-encoded {encode_ms:.0f} ms; a dreamed frame kept as PNG {png_ms:.0f} ms")
    dream = args.dream_s
    alone, chain = dream + 3 * between_ms / 1000, max(dream, png_ms / 1000)
    helpers = math.ceil((3 * between_ms + 4 * encode_ms) / 1000 / chain)
    print(f"  estimate beside a GPU dreaming a frame in {dream:g} s (--dream-s): one process makes 4 frames in "
          f"{alone:.2f} s (the dream, then 3 frames between; ffmpeg encodes in its own process); on workers the "
          f"chain keeps a dreamed frame every {chain:.2f} s (the dream, or its PNG where slower) and {helpers} more "
          f"worker(s) keep up with the frames between: {alone / chain:.1f}x")
    ray.init(include_dashboard=False, object_store_memory=cluster.LOCAL_OBJECT_STORE, log_to_driver=False,
             logging_level="ERROR")
    for workers in (1, 2):
        with cluster.Pool(workers=workers) as pool:
            warm = make_job({**settings, "frames": 8, "output": str(work / f"warm{workers}.mp4")})
            cluster.render_zoom(warm, pool=pool, progress=False)
            job = make_job({**settings, "output": str(work / f"workers{workers}.mp4")})
            start = time.perf_counter()
            spans = cluster.render_zoom(job, pool=pool, progress=False)
            wall = time.perf_counter() - start
            placed = pool.placed[-len(spans) - 1:]
            apart = sum(1 for _, worker in placed[1:] if worker != placed[0][1])
            equal = bool(np.array_equal(np.stack(list(media.read_video(job.output))), reference))
            print(f"{workers} worker(s) x {pool.threads} thread(s): {wall:.1f} s; {len(spans)} segments, {apart} made "
                  f"on a worker other than the chain's; equal={equal}; load {os.getloadavg()[0]:.1f}")
    ray.shutdown()


def between_cost(model, size: str, frames: int = 24) -> tuple[float, float, float]:
    """Milliseconds to make one frame between two dreamed ones of a zoom at ``size`` (``Source.between``, two
    noise frames standing in for the dreamed ones), to H.264-encode it, and to keep a frame as PNG."""
    from zoomdream import media
    from zoomdream.config import make_job
    from zoomdream.loops import zoom

    job = make_job(dict(command="zoom", noise=True, size=size, frames=8, interpolate=4, zoom="1.04", angle="0.3",
                        precision="float32", output="unused.mp4"))
    source = zoom.Source(zoom.resolve(job), model)
    rng = np.random.default_rng(0)
    w, h = source.settings.size
    before, after = (rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2))
    made, made_s = [], []
    for t in [1, 2, 3] * (frames // 3):
        start = time.perf_counter()
        made.append(source.between(t, before, after))
        made_s.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        with media.VideoWriter(Path(folder) / "between.mp4", 24) as writer:
            for frame in made:
                writer.write(frame)
        encode_s = (time.perf_counter() - start) / len(made)
        start = time.perf_counter()
        for i, frame in enumerate(made[:6]):
            media.write_image(Path(folder) / f"{i}.png", frame)
        png_s = (time.perf_counter() - start) / 6
    return 1000 * statistics.median(made_s), 1000 * encode_s, 1000 * png_s


def frame_cost(args) -> None:
    import cv2

    from zoomdream import backend, media, precision
    from zoomdream.config import make_job
    from zoomdream.engine import build_dreamer, resolve_engine
    from zoomdream.flow import coherent_init, motion_between, temporal_blend
    from zoomdream.frames.levels import to_uint8, to_unit
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
    concat_s = concat_cost(folder / "join.mp4", args.encode_frames)
    per_frame = flow_s + dream_s + blend_s  # the PNG is kept on a thread while the next frame dreams
    seam_frame = 2 * read_s + encode_s  # a cross-faded frame: both chunks' PNGs read, faded, encoded
    print(f"per frame: flow + blend {flow_s + blend_s:.3f} s, dream {dream_s:.3f} s, PNG write {write_s:.3f} s "
          f"(overlapped), worker total {per_frame:.3f} s; H.264 encode {encode_s:.3f} s (the chunk's, on its "
          f"worker); PNG read {read_s:.3f} s; join: streams concatenated {concat_s * 1000:.2f} ms a frame, a seam "
          f"frame {seam_frame:.3f} s; start-up (model load, compile) {startup:.1f} s")
    print_estimate(startup, per_frame, encode_s, read_s, concat_s)


def concat_cost(stream: Path, frames: int, copies: int = 8) -> float:
    """Seconds a frame of joining ``copies`` copies of ``stream`` without re-encoding (the new join's part)."""
    from zoomdream import media

    start = time.perf_counter()
    media.VideoWriter(stream.with_name("joined.mp4"), 24.0).write_segments([(stream, frames)] * copies)
    return (time.perf_counter() - start) / (frames * copies)


def print_estimate(startup: float, per_frame: float, encode_s: float, read_s: float, concat_s: float) -> None:
    """A 3-minute clip at 24 fps on 1, 8 and 64 workers from one frame's parts: each chunk dreams and encodes
    its frames; the workers encode the W cross-faded frames of each seam at once; the join concatenates the
    streams. Beside it, the join before: every frame read and encoded on one machine."""
    frames, warmup = 3 * 60 * 24, 8
    print(f"\nestimate, a 3-minute clip at 24 fps ({frames} frames), one chunk per worker, W = {warmup}, every "
          f"worker as fast as this one (chunk: dream + encode each frame; join: streams + seams):")
    print("workers   chunk phase   join    total    speed-up   (join before: every frame read and encoded)")
    alone = startup + frames * (per_frame + encode_s)
    for workers in (1, 8, 64):
        chunk = startup + (math.ceil(frames / workers) + (warmup if workers > 1 else 0)) * (per_frame + encode_s)
        join = frames * concat_s + (warmup * (2 * read_s + encode_s) if workers > 1 else 0)  # seams at once
        before = startup + (math.ceil(frames / workers) + (warmup if workers > 1 else 0)) * per_frame + \
            frames * (read_s + encode_s)
        print(f"{workers:>7d}   {chunk / 60:>9.1f} m   {join / 60:>4.1f} m   {(chunk + join) / 60:>5.1f} m   "
              f"{alone / (chunk + join):>6.1f}x     ({before / 60:.1f} m)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default=str(ROOT / "tests" / "data" / "example.mp4"))
    parser.add_argument("--max-size", type=int, default=256)
    parser.add_argument("--duration", type=float, default=None, help="seconds of the clip (default: all)")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--warmups", default="0,4,8", help="warm-up frames to compare (the last is the default's)")
    parser.add_argument("--frame-cost", action="store_true", help="time one video frame's parts and estimate a "
                                                                  "long clip on many workers")
    parser.add_argument("--size", default="1920x1080", help="--frame-cost frame size; --zoom: of the frame between")
    parser.add_argument("--join", action="store_true", help="time today's join (every frame read and encoded) "
                                                            "against the new (streams joined) on a 1280x720 clip")
    parser.add_argument("--nodes", type=int, default=0, help="render on this many Ray nodes started here with "
                                                              "`ray start`, a worker killed, against a local cluster")
    parser.add_argument("--loops", type=int, default=8, help="--join: the 1 s test clip played this many times")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--estimate", default=None, metavar="STARTUP,FRAME,ENCODE,READ,CONCAT",
                        help="print the estimate from these seconds (start-up, worker per frame, H.264 encode, PNG "
                             "read, concat per frame), measured elsewhere")
    parser.add_argument("--encode-frames", type=int, default=48)
    parser.add_argument("--zoom", action="store_true", help="time a zoom --interpolate 4 in this process and with "
                                                            "its in-betweens on 1 and 2 workers")
    parser.add_argument("--zoom-size", default="192x192")
    parser.add_argument("--zoom-frames", type=int, default=97)
    parser.add_argument("--dream-s", type=float, default=0.05, help="--zoom's estimate: a GPU's dream of a frame "
                                                                     "at --size (the H200's at 1080p: 0.05 s)")
    args = parser.parse_args()
    args.warmups = [int(w) for w in args.warmups.split(",")]
    if args.estimate:
        print_estimate(*(float(v) for v in args.estimate.split(",")))
    elif args.nodes:
        nodes_figures(args)
    elif args.join:
        join_figures(args)
    elif args.zoom:
        zoom_figures(args)
    else:
        frame_cost(args) if args.frame_cost else cluster_figures(args)


if __name__ == "__main__":
    main()
