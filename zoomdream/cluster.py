"""Rendering past one machine with Ray: many jobs spread over workers, or one clip rendered in chunks.

A worker is a Ray actor (Ray's documented pattern for a model kept loaded per process): it loads its model
once, keeps it between jobs, and calls the runner: ``render`` for whole jobs, ``render_piece`` for a clip's
chunks, ``join_pieces`` for their join, ``render_keys`` and ``render_between`` for a zoom with --interpolate N.
``render_jobs``, ``render_chunks`` and ``render_zoom`` are the entry points; each takes a ``Pool`` or starts one
(a local Ray cluster sized to this machine, or a running cluster by address).

Frames cross machines as files, not through Ray's object store: every path of a job (inputs, output, work and
frames folders) must name the same file on every machine, so a cluster needs a shared folder (NFS, a cloud
file system) mounted at the same place everywhere; paths are made absolute where the command runs. Files make a
chunk resumable: a worker that dies mid-chunk is restarted by Ray and its chunk retried, continuing from the
frames it had kept (the runner's resume is exact), and Ctrl-C keeps every kept frame for ``--resume``. The
object store carries only jobs, file names and a progress counter. Each chunk keeps the frames the output takes
from it alone as H.264 segments of its own (PNG only for the frames its seams cross-fade); the workers then
encode the cross-faded seams, and the join copies every stream into the output without re-encoding, adding the
audio once.

Ray is the optional extra ``zoomdream[cluster]``: it is imported only when a cluster is asked for.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import threading
import uuid
from bisect import bisect_left
from dataclasses import dataclass, fields, replace
from pathlib import Path

from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError

EXTRA = "pip install 'zoomdream[cluster]'"
RETRIES = 3  # restarts of a dead worker, and retries of the chunk or job it was rendering
WARMUP = 8  # frames a chunk starts before its range, so the flow coherence carries across the seam
POLL_S = 0.2  # how often the driver refreshes the progress bar
START_TIMEOUT_S = 300  # workers that cannot be placed on the cluster in this time are an error, not a hang
LOCAL_OBJECT_STORE = 128 * 2 ** 20  # frames travel as files: the object store holds only small values


def require_ray():
    """Ray, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ZoomdreamError(f"rendering on a cluster needs Ray, which is not installed (run: {EXTRA})") from None
    return ray


# --------------------------------------------------------------------------------------------------------------
# Command line


def add_flags(parser, chunks: bool) -> None:
    """The cluster flags of `render`, `zoom` and (with ``chunks``) `video`. They are not render settings: they
    change where frames are made, never the frames, so they live here rather than in the Job schema."""
    group = parser.add_argument_group(f"cluster (needs Ray: {EXTRA})")
    group.add_argument("--cluster", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="render on a Ray cluster: the ADDRESS of a running one (or $RAY_ADDRESS), else a local "
                            "cluster sized to this machine; every path must be on a folder all machines share")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="Ray workers, each loading the model once (default: one per GPU, else one per job or "
                            "chunk up to one per CPU, the CPUs shared out among them as threads)")
    if chunks:
        group.add_argument("--chunks", type=int, default=None, metavar="N",
                           help="split the clip into N frame ranges rendered in parallel and joined with the "
                                "audio (default with --cluster: one per worker); implies --cluster")
        group.add_argument("--warmup", type=int, default=None, metavar="W",
                           help=f"frames each chunk starts early, cross-faded with the end of the chunk before, "
                                f"so its seam dissolves instead of cutting (default: {WARMUP})")
    else:  # asked for anyway: refused with the reason (see main)
        group.add_argument("--chunks", type=int, default=None, help=argparse.SUPPRESS)


def requested(args) -> bool:
    return any(getattr(args, name, None) is not None for name in ("cluster", "workers", "chunks", "warmup"))


def main(args, jobs: list[Job], names: list[str], protected: tuple[str, ...] = ()) -> None:
    """Run the command's jobs on a cluster: `video` in chunks, `render` as whole jobs over the workers."""
    from zoomdream.settings import number

    if args.command != "video" and getattr(args, "chunks", None) is not None:
        raise ZoomdreamError(f"a {args.command} does not split into chunks: a zoom's dreamed frames are a feedback "
                             f"chain, each made from the one before (leave out --chunks: with --cluster and "
                             f"--interpolate N a zoom's frames between them go to the workers)")
    require_ray()
    if args.cluster and os.path.exists(args.cluster):
        raise ZoomdreamError(f"--cluster took '{args.cluster}' for the cluster's address, but it is a file here (put "
                             f"--cluster after the files, or write --cluster=ADDRESS)")
    workers = None if args.workers is None else number(args.workers, "workers", low=1, high=100_000, integer=True)
    address = args.cluster or None
    if args.command == "video":
        chunks = None if args.chunks is None else number(args.chunks, "chunks", low=1, high=100_000, integer=True)
        warmup = WARMUP if args.warmup is None else number(args.warmup, "warmup", low=0, high=10_000, integer=True)
        render_chunks(jobs[0], chunks, warmup=warmup, address=address, workers=workers)
    elif len(jobs) == 1 and keyed(jobs[0]):
        render_zoom(jobs[0], protected=protected, address=address, workers=workers)
    else:
        render_jobs(jobs, names=names, protected=protected, address=address, workers=workers)


# --------------------------------------------------------------------------------------------------------------
# The two entry points


def render_jobs(jobs: list[Job], *, names: list[str] | None = None, protected: tuple[str, ...] = (),
                address: str | None = None, workers: int | None = None, progress: bool = True,
                on_progress=None, pool: Pool | None = None) -> None:
    """Render whole jobs, each on one worker, as many at once as there are workers; every output and
    ``.job.toml`` lands where its job says. Every job is checked before any work. A job that fails does not stop
    the others; the first failure is raised once all have run. ``names``: how errors name each job (its file);
    ``protected``: files no output may overwrite (the job files); ``on_progress(done, total)``: called on the
    driver as frames complete."""
    jobs = [absolute(job) for job in jobs]
    names = names or [str(job.output) for job in jobs]
    protected = tuple(os.path.abspath(p) for p in protected)
    checked = [_named(name, check, job, protected) for job, name in zip(jobs, names)]
    frames = [count for count, _, _ in checked]
    _check_distinct(jobs, names)
    total = None if None in frames else sum(frames)
    # The longest first, so no worker is left with a long job at the end while the others wait. Any work folder
    # left now is the caller's to resume (checked above), so a retried job resumes too.
    order = sorted(range(len(jobs)), key=lambda i: -job_work(checked[i][1], frames[i]))
    tasks = [Task(i, "render", (replace(jobs[i], resume=True), protected), names[i]) for i in order]
    with _pool(pool, address, workers, len(tasks)) as p:
        _, failures = p.run(tasks, total=total, progress=progress, on_progress=on_progress, stop_on_error=False)
    if failures:
        first = failures[0]
        raise ZoomdreamError(f"{len(failures)} of {len(jobs)} jobs failed; the first, {first}" if len(jobs) > 1
                             else str(first))


def render_chunks(job: Job, chunks: int | None = None, *, warmup: int = WARMUP, fade: bool = True,
                  address: str | None = None, workers: int | None = None, progress: bool = True, on_progress=None,
                  pool: Pool | None = None) -> list[range]:
    """Render a video job in ``chunks`` frame ranges at once (default: one per worker) and join them into
    ``job.output`` with the audio: frame count, fps and audio as a single render's. Every chunk after the first
    starts ``warmup`` frames early, from the source alone; the join cross-fades those frames with the end of
    the chunk before (``fade``; without it they are dreamed and discarded, and the seam cuts). The dream does
    not forget its history (a chunk's frames stay as far from a single render's after 24 warm-up frames as after
    4), so a cut shows; the fade makes a seam flicker like any other frame step. Each chunk keeps its frames in
    ``OUT.zoomdream/chunk-A-B-warmupW/``, resumable on its own. Returns the chunks' frame ranges, warm-up
    excluded."""
    job = absolute(job)
    if job.command != "video":
        raise ZoomdreamError(f"only a video job splits into chunks, not a {job.command} (a zoom's dreamed frames "
                             f"are a feedback chain: each needs the one before it; with --interpolate N the frames "
                             f"between them go to the workers: `zoomdream zoom ... --interpolate 4 --cluster`)")
    total, settings, checked = check(job)
    if total is None:
        raise ZoomdreamError(f"the length of '{job.input}' is unknown, so it cannot be split into chunks (re-mux it "
                             f"into an .mp4 or .mkv, or render it without --chunks)")
    from zoomdream.store import FrameStore

    work = _work_folder(job)
    # The driver holds the output's work folder until it is gone: a second driver, or a render of the same
    # output, is refused here, before any worker starts or any file is written (see sinks.FrameStore).
    claim = FrameStore(work, frames_dir=work)
    claim.lock()
    try:
        _export_schedules(job, settings, checked)
        step = job.interpolate  # chunks start on dreamed frames where the frames between are interpolated
        with _pool(pool, address, workers, chunks) as p:
            spans = chunk_spans(total, chunks or len(p.actors), step)
            # One precision and tile for every chunk; any work folder left now is the caller's to resume
            # (checked).
            pinned = replace(p.call("pin", job), resume=True, export_schedules=None)
            pieces = chunk_pieces(spans, warmup, fade, step)
            folders = [str(work / f"chunk-{a:08d}-{b:08d}-warmup{w}") for a, b, w in pieces]
            streams = _streams(job, pieces)
            # Only the first chunk rewrites the preview: two workers writing one file would race on its
            # temporary.
            tasks = [Task(i, "piece", (replace(pinned, preview=pinned.preview if i == 0 else 0), (a, b), folder,
                                       w, streams[i]), f"frames {a}-{b - 1}")
                     for i, ((a, b, w), folder) in enumerate(zip(pieces, folders))]
            dreamed = sum(b - a for a, b, _ in pieces)  # the warm-up frames that fade into a seam are dreamed too
            label = f"frames ({total} + {dreamed - total} warm-up)" if dreamed > total else "frames"
            p.run(tasks, total=dreamed, progress=progress, on_progress=on_progress, stop_on_error=True,
                  label=label)
            # The seams (W cross-faded frames each) encoded on the workers at once; the join then only copies.
            p.run([Task(len(tasks) + i, "seams", (pinned, folders, folder), f"the seam in {folder}")
                   for i, folder in enumerate(folders)], total=None, progress=False, stop_on_error=True)
            p.call("join", pinned, folders)
        claim.remove()
    finally:
        claim.release_unused()
    return spans


def render_zoom(job: Job, *, protected: tuple[str, ...] = (), address: str | None = None,
                workers: int | None = None, progress: bool = True, on_progress=None,
                pool: Pool | None = None) -> list[range]:
    """Render a zoom with ``--interpolate N`` on the workers: the file a single render makes, its frames made
    in parallel where they can be. Its dreamed frames (every Nth) are a feedback chain, each from the one
    before: one worker dreams them into ``OUT.zoomdream/keys/`` (PNG, lossless; resumable on its own). The frames
    between two dreamed ones depend on those two only: as soon as a segment's dreamed frames are kept, a free
    worker makes its frames and encodes them into the segment a single render would encode (``runner.key_plan``;
    a segment already made is kept), while the chain goes on. The join copies the segments into the output and
    adds the audio once. Returns the segments' frame ranges."""
    job = absolute(job)
    if not keyed(job):
        raise ZoomdreamError(f"only a zoom with --interpolate N (N of 2 or more) makes its frames apart from its "
                             f"dreamed frames, not a {job.command} with --interpolate {job.interpolate} (render it "
                             f"whole: `zoomdream render JOB --cluster`)")
    _, settings, checked = check(job, protected)
    from zoomdream import runner
    from zoomdream.store import FrameStore

    work = _work_folder(job)
    claim = FrameStore(work, frames_dir=work)  # held by the driver until the output is made (see render_chunks)
    claim.lock()
    try:
        _export_schedules(job, settings, checked)
        with _pool(pool, address, workers, None) as p:
            # One precision and tile for every worker; any work folder left now is the caller's to resume (checked).
            pinned = replace(p.call("pin", job), resume=True, export_schedules=None)
            keys, spans = p.call("plan", pinned)
            folder, streams = str(work / "keys"), [runner.stream_path(work, span) for span in spans]
            tasks = [Task(k + 1, "between", (pinned, folder, (span.start, span.stop), str(stream)),
                          f"frames {span.start}-{span.stop - 1}", after=(0, bisect_left(keys, span.stop - 1) + 1))
                     for k, (span, stream) in enumerate(zip(spans, streams)) if not stream.is_file()]
            made = sum(len(spans[task.key - 1]) for task in tasks)
            p.run([Task(0, "keys", (pinned, folder), "the dreamed frames"), *tasks], total=len(keys) + made,
                  progress=progress, on_progress=on_progress, stop_on_error=True,
                  label=f"frames ({len(keys)} dreamed, {made} made)")
            p.call("join_segments", pinned, [(str(stream), len(span)) for span, stream in zip(spans, streams)],
                   tuple(os.path.abspath(path) for path in protected))
        claim.remove()
    finally:
        claim.release_unused()
    return spans


def job_work(settings, frames: int | None) -> float:
    """A job's rough cost, to hand out the longest first: width x height x ascent steps, summed over the frames
    it dreams (every Nth with --interpolate N; a clip of unknown length counts as one frame)."""
    from zoomdream.loops.common import read_start
    from zoomdream.schedules import Schedule

    if hasattr(settings, "size"):  # zoom
        width, height = settings.size
    elif hasattr(settings, "info"):  # a clip, shrunk to --max-size
        width, height = settings.info.width, settings.info.height
        scale = min(1.0, (settings.max_size or max(width, height)) / max(width, height))
        width, height = width * scale, height * scale
    else:  # a still
        height, width = read_start(str(settings.input), settings.max_size).shape[:2]
    dreamed = range(0, frames or 1, getattr(settings, "interpolate", 1))
    steps, dream = getattr(settings, "steps", None), getattr(settings, "dream", None)
    if isinstance(steps, Schedule):  # keyframed
        return width * height * sum(max(1.0, steps.at(t)) for t in dreamed)
    return width * height * len(dreamed) * max(1, dream.steps if dream is not None else 1)


def keyed(job: Job) -> bool:
    """Whether a job's dreamed frames are a chain apart from the frames between them (a zoom with
    --interpolate N), which ``render_zoom`` makes on several workers."""
    return job.command == "zoom" and isinstance(job.interpolate, int) and job.interpolate > 1


def _export_schedules(job: Job, settings, checked: Job) -> None:
    """``--export-schedules``, written once by the driver before any frame: the workers' jobs leave it out."""
    if job.export_schedules:
        from zoomdream.curves import export_schedules

        export_schedules(settings, job.export_schedules, checked)


def _streams(job: Job, pieces: list[tuple[int, int, int]]) -> list[tuple[int, int] | None]:
    """The frames each chunk encodes on its worker: those the output takes from it alone (its range, less the
    frames cross-faded into the next chunk, which the seams encode)."""
    from zoomdream import runner

    alone = {k: (frames.start, frames.stop) for frames, k, faded in runner.join_parts([p[:2] for p in pieces])
             if not faded}
    return [alone.get(k) for k in range(len(pieces))]


def chunk_pieces(spans: list[range], warmup: int, fade: bool = True, step: int = 1) -> list[tuple[int, int, int]]:
    """What each worker renders for the chunks ``spans``: (first frame, end, warm-up frames dreamed before the
    first and discarded). With ``fade``, each chunk after the first starts ``warmup`` frames early (on a multiple
    of ``step``, and after the chunk before it starts: the join fades between two pieces at a time) and keeps
    those frames for the join's cross-fade."""
    if not fade:
        return [(s.start, s.stop, warmup) for s in spans]
    firsts = [0] + [-(-max(s.start - warmup, before.start + 1) // step) * step for before, s in zip(spans, spans[1:])]
    return [(first, s.stop, 0) for first, s in zip(firsts, spans)]


def chunk_spans(total: int, chunks: int, step: int = 1) -> list[range]:
    """``total`` frames cut into at most ``chunks`` ranges of near-equal length, each boundary a multiple of
    ``step`` (a dreamed key frame, where in-between frames are interpolated)."""
    chunks = max(1, min(chunks, total))
    bounds = sorted({min(total, round(i * total / chunks / step) * step) for i in range(chunks)} | {total})
    return [range(a, b) for a, b in zip(bounds, bounds[1:])]


# --------------------------------------------------------------------------------------------------------------
# Checks on the driver, before any work


def absolute(job: Job) -> Job:
    """The job with every path made absolute here: a worker elsewhere runs in another folder."""
    paths = {f.name: os.path.abspath(getattr(job, f.name)) for f in fields(job)
             if f.metadata["kind"] == "path" and getattr(job, f.name) not in (None, "", "random")}
    return replace(job, **paths)


def check(job: Job, protected: tuple[str, ...] = ()) -> tuple[int | None, object, Job]:
    """Check a job as a render would before its model loads (settings, output, an interrupted render that
    needs --resume). Returns its frame count (None: until the clip ends), the loop's settings and the job with
    what its inputs decided pinned (``runner.check_job``)."""
    from zoomdream import runner
    from zoomdream.config import LOOPS

    if not job.output:
        raise ZoomdreamError("no output file given (add -o OUT)")
    _, settings, checked, _ = runner.check_job(job, protected)
    if job.command not in LOOPS:
        return 1, settings, checked
    runner.check_work(checked)
    return getattr(settings, "frames", None), settings, checked


def _work_folder(job: Job) -> Path:
    from zoomdream.runner import work_folder

    return work_folder(Path(job.output))


def _named(name: str, function, *args):
    try:
        return function(*args)
    except ZoomdreamError as e:
        raise ZoomdreamError(f"{name}: {e}") from None


def _check_distinct(jobs: list[Job], names: list[str]) -> None:
    """No two jobs write the same output, and no job writes what another reads."""
    written = {}
    for job, name in zip(jobs, names):
        out = os.path.realpath(job.output)
        if out in written:
            raise ZoomdreamError(f"{name} and {written[out]} both write '{job.output}' (give each job its own "
                                 f"output)")
        written[out] = name
    for job, name in zip(jobs, names):
        for path in (job.input, job.guide):
            if path and os.path.realpath(path) in written and written[os.path.realpath(path)] != name:
                raise ZoomdreamError(f"{name} reads '{path}', which {written[os.path.realpath(path)]} writes "
                                     f"(render them one after the other)")


# --------------------------------------------------------------------------------------------------------------
# The workers


@dataclass(frozen=True)
class Task:
    """One call to run on a free worker: ``method`` of ``_Worker`` with its progress key and ``args``; ``name``
    for errors."""

    key: int
    method: str
    args: tuple
    name: str
    after: tuple[int, int] | None = None  # (task key, frames): start once that task has kept that many frames


class _Worker:
    """A Ray actor: one process, its model loaded once and kept for every job it renders."""

    def __init__(self, threads: int, progress: str):
        import ray

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        _limit_threads(threads)
        self.progress, self.loaded = ray.get_actor(progress), (None, None)

    def pid(self) -> int:
        return os.getpid()

    def pin(self, job: Job) -> Job:
        from zoomdream import runner

        return runner.pin_machine(job) if self._dreams(job) else job

    def render(self, key: tuple, job: Job, protected: tuple[str, ...]) -> str:
        from zoomdream import runner

        job = self.pin(job)
        runner.render(job, progress=False, model=self._model(job), sinks=(self._counter(key),), protected=protected)
        return job.output

    def piece(self, key: tuple, job: Job, span: tuple[int, int], work: str, warmup: int,
              stream: tuple[int, int] | None) -> str:
        from zoomdream import runner

        runner.render_piece(job, range(*span), Path(work), warmup=warmup, progress=False, model=self._model(job),
                            sinks=(self._counter(key), *self._preview(job)), stream=stream and range(*stream),
                            frames_dir=job.frames_dir and Path(job.frames_dir))
        return work

    def plan(self, job: Job) -> tuple[list[int], list[range]]:
        from zoomdream import runner

        return runner.key_plan(job, model=self._model(job))

    def keys(self, key: tuple, job: Job, work: str) -> str:
        from zoomdream import runner

        runner.render_keys(job, Path(work), progress=False, model=self._model(job),
                           sinks=(self._counter(key), *self._preview(job)))
        return work

    def between(self, key: tuple, job: Job, keys: str, frames: tuple[int, int], stream: str) -> str:
        from zoomdream import runner

        runner.render_between(job, Path(keys), range(*frames), Path(stream), model=self._model(job),
                              sinks=(*self._frames_dir(job), self._counter(key)))
        return stream

    def join_segments(self, job: Job, streams: list[tuple[str, int]], protected: tuple[str, ...]) -> None:
        from zoomdream import runner

        runner.join_segments(job, streams, model=self._model(job), protected=protected)

    def seams(self, key: tuple, job: Job, pieces: list[str], folder: str) -> None:
        from zoomdream import runner

        runner.encode_seams(job, [Path(p) for p in pieces], model=self._model(job), folder=Path(folder),
                            sinks=self._frames_dir(job))  # the cross-faded frames: the chunks wrote the others

    def join(self, job: Job, pieces: list[str]) -> None:
        from zoomdream import runner

        runner.join_pieces(job, [Path(p) for p in pieces], model=self._model(job))

    def _dreams(self, job: Job) -> bool:
        from zoomdream import runner

        return getattr(runner.loop_module(job.command), "NEEDS_MODEL", True)

    def _model(self, job: Job):
        """The job's model, loaded once per worker (a job with another model replaces it)."""
        if not self._dreams(job):
            return None
        key = (job.model, job.weights, job.precision)
        if self.loaded[0] != key:
            from zoomdream.models import load_model

            self.loaded = (None, None)  # let the old model go before the new one loads
            self.loaded = (key, load_model(*key))
        return self.loaded[1]

    def _frames_dir(self, job: Job) -> tuple:
        """``--frames-dir``, where the job asks for it: the frames a task makes as PNG."""
        from zoomdream import media
        from zoomdream.sinks import FramesDirSink

        return (FramesDirSink(media.make_folder(job.frames_dir)),) if job.frames_dir else ()

    def _preview(self, job: Job) -> tuple:
        from zoomdream import runner
        from zoomdream.sinks import PreviewSink

        return (PreviewSink(runner.preview_path(Path(job.output)), job.preview),) if job.preview else ()

    def _counter(self, key: tuple):
        from zoomdream.sinks import MemorySink

        return MemorySink(on_frame=lambda index, frame: self.progress.frame.remote(key, index))


def _limit_threads(threads: int) -> None:
    """Each worker keeps its share of the machine's cores (before TensorFlow starts in this process), except
    where that would change its frames. OpenCV's optical flow gives the same result on any number of threads,
    so it gets the share. TensorFlow's sums do not: they are split by its intra-op thread count, and a dream
    step on 1 thread differs from one on 2 in the last bits, which the dream amplifies (0.7/255 by the second
    frame of a 64 px clip, 5/255 at 512 px between 2 and 8 threads). So each worker computes with the threads
    a local render on its machine has (TensorFlow's default: every core this process may run on), and a chunk
    equals the local render of that piece; only the inter-op threads (which order ops, not sums) are shared."""
    import cv2

    cv2.setNumThreads(threads)
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(local_threads())
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def local_threads() -> int:
    """TensorFlow's intra-op threads in a process started here: ``$TF_NUM_INTRAOP_THREADS``, else the cores
    this process may run on."""
    try:
        return int(os.environ["TF_NUM_INTRAOP_THREADS"])
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _Progress:
    """Frames finished across all workers, by run, each counted once (a retried chunk hands its kept frames on
    again). A key is (run, task)."""

    def __init__(self):
        self.seen = {}  # run -> task -> frame indices

    def frame(self, key: tuple, index: int) -> None:
        self.seen.setdefault(key[0], {}).setdefault(key[1], set()).add(index)

    def count(self, run: int) -> int:
        return sum(map(len, self.seen.get(run, {}).values()))

    def kept(self, run: int) -> dict[int, int]:
        """Frames kept so far by each task of the run."""
        return {task: len(indices) for task, indices in self.seen.get(run, {}).items()}


class _Closes:
    """A context manager that calls ``close`` on leaving."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Pool(_Closes):
    """Ray workers and one progress counter, on a running cluster (``address``, or ``$RAY_ADDRESS``; an
    already initialised Ray is used as it is) or on a local cluster started here and stopped by ``close``.
    ``workers`` (default: one per GPU, else ``tasks`` up to one per CPU) share the CPUs out as threads."""

    def __init__(self, address: str | None = None, workers: int | None = None, tasks: int | None = None):
        ray = self.ray = require_ray()
        self.started, self.actors, self.progress, self.runs = False, [], None, 0
        self.placed: list[tuple[str, int]] = []  # (task name, worker index), in the order handed out
        try:
            self.started = _connect(ray, address)
            count, cpus, gpus, threads = _layout(ray, workers, tasks)
            # Workers find the counter by name: a restarted worker needs no object kept for its arguments.
            name = f"zoomdream-progress-{uuid.uuid4().hex}"
            self.progress = ray.remote(num_cpus=0)(_Progress).options(name=name).remote()
            worker = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(_Worker)
            self.actors = [worker.options(num_cpus=cpus, num_gpus=gpus).remote(threads, name) for _ in range(count)]
            try:
                self.pids = ray.get([a.pid.remote() for a in self.actors], timeout=START_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                raise ZoomdreamError(f"the cluster did not start {count} workers of {cpus:g} CPUs"
                                     f"{f' and {gpus:g} GPU' if gpus else ''} within {START_TIMEOUT_S} s "
                                     f"(ask for fewer --workers, or add machines)") from None
            self.threads = threads
        except BaseException:
            self.close()
            raise

    def call(self, method: str, *args):
        """Run one call on the first worker and wait for it."""
        try:
            return self.ray.get(getattr(self.actors[0], method).remote(*args))
        except BaseException as e:
            raise _failure(self.ray, e, method) from None

    def run(self, tasks: list[Task], *, total: int | None, progress: bool = True, on_progress=None,
            stop_on_error: bool = True, label: str = "frames") -> tuple[dict, list[ZoomdreamError]]:
        """Hand ``tasks`` to free workers until all are done, with one progress bar (frames, ETA) over all of
        them. Returns the results by task key and the failures (with ``stop_on_error``, the first is raised at
        once). Any exception here, Ctrl-C included, stops the workers; frames they kept stay."""
        from tqdm import tqdm

        ray = self.ray
        self.runs += 1
        queue, idle, running, results, failures = list(tasks), list(self.actors), {}, {}, []
        try:
            with tqdm(total=total, desc=f"{label} on {len(self.actors)} workers", unit="frame",
                      disable=not progress, dynamic_ncols=True) as bar:
                while queue or running:
                    kept = ray.get(self.progress.kept.remote(self.runs)) if any(t.after for t in queue) else {}
                    ready = [t for t in queue if t.after is None or kept.get(t.after[0], 0) >= t.after[1]]
                    if not running and not ready:
                        raise RuntimeError(f"{queue[0].name} waits for frames no task is making")
                    for task in ready[:len(idle)]:
                        queue.remove(task)
                        actor = idle.pop(0)
                        call = getattr(actor, task.method).remote((self.runs, task.key), *task.args)
                        running[call] = (actor, task)
                        self.placed.append((task.name, self.actors.index(actor)))
                    ready, _ = ray.wait(list(running), num_returns=len(running), timeout=POLL_S)
                    for ref in ready:
                        actor, task = running.pop(ref)
                        idle.append(actor)
                        try:
                            results[task.key] = ray.get(ref)
                        except Exception as e:
                            failures.append(_failure(ray, e, task.name))
                            if stop_on_error:
                                raise failures[-1] from None
                    done = ray.get(self.progress.count.remote(self.runs))
                    bar.update(done - bar.n)
                    if on_progress is not None:
                        on_progress(done, total)
        except BaseException:
            self.close()
            raise
        return results, failures

    def close(self) -> None:
        """Stop the workers, freeing their share of a running cluster, and a local cluster started here."""
        ray = self.ray
        if self.started and ray.is_initialized():
            ray.shutdown()  # a local cluster stops; on a running cluster, this driver's workers end with it
        else:  # the caller's Ray stays up
            for actor in [*self.actors, *([self.progress] if self.progress is not None else [])]:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # already gone
                    pass
        self.actors, self.progress, self.started = [], None, False


class _Borrowed:
    """A caller's pool, lent to one render and left open."""

    def __init__(self, pool: Pool):
        self.pool = pool

    def __enter__(self) -> Pool:
        return self.pool

    def __exit__(self, *exc) -> None:
        pass


def _pool(pool: Pool | None, address: str | None, workers: int | None, tasks: int | None):
    return _Borrowed(pool) if pool is not None else Pool(address, workers, tasks)


def _connect(ray, address: str | None) -> bool:
    """Connect to ``address`` or ``$RAY_ADDRESS``, else start a local cluster; True where it was started here.
    A Ray already initialised in this process is used as it is."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _reachable(address)
        _authenticate(address)
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: never report usage
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        if address:
            ray.init(address=address, **quiet)  # this driver's connection; the cluster itself stays up
        else:
            ray.init(include_dashboard=False, object_store_memory=LOCAL_OBJECT_STORE, **quiet)
        if main_thread:  # Ray installs its own, which exits at once: SIGTERM stops a render like Ctrl-C
            signal.signal(signal.SIGTERM, on_sigterm)
        return True
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at '{address}'" if address else "a local Ray cluster"
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hint = ("check that ADDRESS is the head's address and port that `ray start --head` printed, and that "
                "this machine has the same Ray version as the cluster" if address else "see the Ray logs")
        raise ZoomdreamError(f"cannot start or reach {where}: {reason} ({hint})") from None


def _host_port(address: str) -> tuple[str, int] | None:
    """HOST and PORT of a HOST:PORT address (``ray://`` too); None for "auto", "local" (Ray finds those)."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else None


def _reachable(address: str) -> None:
    """A HOST:PORT address (``ray://`` too) must accept a connection: Ray itself would retry for minutes."""
    if _host_port(address) is None:
        return
    try:
        socket.create_connection(_host_port(address), timeout=10).close()
    except OSError as e:
        raise ZoomdreamError(f"cannot reach the Ray cluster at '{address}': {e.strerror or e} (check the address and "
                             f"port, start the cluster with `ray start --head`, or leave out ADDRESS for a local "
                             f"cluster)") from None


def _authenticate(address: str) -> None:
    """Meet Ray's token authentication before ``ray.init``, which would otherwise retry for
    half a minute and blame the address. A head started with ``ray start --head`` asks for a token whenever its
    machine has one (``~/.ray/auth_token``, which any local ``ray.init`` creates), but a driver connecting to an
    explicit address sends none unless ``RAY_AUTH_MODE=token``. So: ask the head once without a token; where
    it refuses, offer this machine's token, read as ``ray get-auth-token`` reads it (``$RAY_AUTH_TOKEN``, the
    file ``$RAY_AUTH_TOKEN_PATH``, else ``~/.ray/auth_token``), and where the head accepts it, connect in token
    mode as ``RAY_AUTH_MODE=token`` would. ``RAY_AUTH_MODE=disabled`` never sends the token."""
    where = _host_port(address)
    if where is None or "://" in address:  # found by Ray itself, or a Ray Client address (not the head's GCS)
        return
    if _gcs_refuses(where, None) is not True:
        return  # no token asked (or no answer: ray.init reports that)
    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    token = None if mode == "disabled" else _local_token()
    fix = ("set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to the cluster's token, which `ray get-auth-token` prints "
           "on its head, or copy it to ~/.ray/auth_token here")
    if token is None:
        raise ZoomdreamError(f"the Ray cluster at '{address}' asks for an authentication token and "
                             f"{'RAY_AUTH_MODE=disabled sends none' if mode == 'disabled' else 'this machine has none'}"
                             f" ({fix})")
    if _gcs_refuses(where, token):
        raise ZoomdreamError(f"the Ray cluster at '{address}' refused this machine's authentication token ({fix})")
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray._raylet import Config

    Config.initialize("")  # Ray reads its mode once: read it again, as Ray's own CLI does when it enables tokens


def _local_token() -> str | None:
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:  # a Ray without token authentication
        return None
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()  # read now, as a fresh `ray` command would
    return loader.get_raw_token(ignore_auth_mode=True) if loader.has_token(ignore_auth_mode=True) else None


def _gcs_refuses(where: tuple[str, int], token: str | None) -> bool | None:
    """Whether the Ray head (its GCS, on gRPC) at ``where`` refuses a request with ``token`` (None: without
    one) as unauthenticated; None where it gives no answer to go by."""
    try:
        import grpc
    except ImportError:
        return None
    host, port = where
    metadata = [("authorization", f"Bearer {token}")] if token else None
    with grpc.insecure_channel(f"[{host}]:{port}" if ":" in host else f"{host}:{port}") as channel:
        try:
            channel.unary_unary("/ray.rpc.NodeInfoGcsService/GetClusterId")(b"", timeout=10, metadata=metadata)
            return False
        except grpc.RpcError as e:
            return True if e.code() == grpc.StatusCode.UNAUTHENTICATED else None


class LocalNodes(_Closes):
    """``count`` Ray nodes on this machine started as a running cluster is (``ray start --head``, then ``ray
    start --address``), each with ``cpus`` CPUs, its own ports and temp folder, in token mode with a token of
    their own, for tests and benchmarks of ``--cluster=ADDRESS`` (``address``). ``env``: more environment for
    the nodes and so their workers (``PYTHONPATH``). ``close`` stops these nodes and nothing else."""

    def __init__(self, count: int = 2, cpus: int = 1, env: dict | None = None, timeout_s: float = 120):
        import secrets
        import subprocess
        import sys
        import tempfile
        import time

        self.root = Path(tempfile.mkdtemp(prefix="zd-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.token = self.root / "token"
        self.token.write_text(secrets.token_hex(32))
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token),
                    "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.env.pop("RAY_ADDRESS", None)
        port = _free_port()
        self.address, self.nodes = f"127.0.0.1:{port}", []
        try:
            for i in range(count):
                where = (["--head", "--port", str(port), "--include-dashboard", "false", "--dashboard-port",
                          str(_free_port()), "--ray-client-server-port", str(_free_port())] if i == 0
                         else ["--address", self.address])
                ports = [arg for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                          "metrics-export-port", "runtime-env-agent-port")
                         for arg in (f"--{name}", str(_free_port()))]
                log = open(self.root / f"node{i}.log", "wb")
                self.nodes.append(subprocess.Popen(
                    [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--node-ip-address",
                     "127.0.0.1", "--num-cpus", str(cpus), "--temp-dir", str(self.root / f"n{i}"), *where, *ports],
                    env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
                log.close()
                deadline = time.monotonic() + timeout_s
                while b"Ray runtime started" not in (self.root / f"node{i}.log").read_bytes():
                    if self.nodes[-1].poll() is not None or time.monotonic() > deadline:
                        tail = (self.root / f"node{i}.log").read_text(errors="replace").strip().splitlines()[-3:]
                        raise RuntimeError(f"Ray node {i} did not start: {' / '.join(tail)}")
                    time.sleep(0.2)
        except BaseException:
            self.close()
            raise

    def worker_pids(self) -> list[int]:
        """The zoomdream workers running on these nodes: descendants of their processes (Linux' /proc)."""
        parents = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                pass
        ours, grown = {node.pid for node in self.nodes}, True
        while grown:
            more = {pid for pid, parent in parents.items() if parent in ours} - ours
            ours, grown = ours | more, bool(more)
        pids = []
        for pid in sorted(ours):
            try:
                if b"_Worker" in (Path("/proc") / str(pid) / "cmdline").read_bytes():
                    pids.append(pid)
            except OSError:
                pass
        return pids

    def close(self) -> None:
        """Stop each node as Ctrl-C on ``ray start --block`` would; whatever is left of its session, by force."""
        import subprocess

        for node in reversed(self.nodes):
            if node.poll() is None:
                node.terminate()
                try:
                    node.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(node.pid, signal.SIGKILL)  # its own session: only what this node started
            except OSError:
                pass
            node.wait()
        self.nodes = []
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _layout(ray, workers: int | None, tasks: int | None) -> tuple[int, float, float, int]:
    """How many workers, the CPUs and GPUs each reserves, and its compute threads: one worker per GPU where
    the cluster has GPUs, else one per task up to one per CPU; the CPUs are shared out so each worker fits on
    one machine."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    cpus = [int(n.get("CPU", 0)) for n in nodes]
    gpus = sum(int(n.get("GPU", 0)) for n in nodes)
    count = workers or gpus or max(1, min(tasks or sum(cpus), sum(cpus)))
    threads = max(1, sum(cpus) // count)
    while threads > 1 and sum(c // threads for c in cpus) < count:
        threads -= 1
    share = threads if sum(c // threads for c in cpus) >= count else sum(cpus) / count
    return count, share, min(1.0, gpus / count), threads


def _failure(ray, error: BaseException, name: str) -> BaseException:
    """A worker's failure as one ZoomdreamError line naming the job or chunk; Ctrl-C stays as it is."""
    if isinstance(error, KeyboardInterrupt):
        return error
    cause = getattr(error, "cause", None) or error
    if isinstance(error, ray.exceptions.RayActorError):
        return ZoomdreamError(f"{name}: a worker died {RETRIES + 1} times rendering it (see the Ray logs; kept "
                              f"frames stay: run again with --resume)")
    if isinstance(cause, ZoomdreamError):
        return ZoomdreamError(f"{name}: {cause}")
    if isinstance(cause, OSError):
        where = f" ('{cause.filename}')" if cause.filename else ""
        return ZoomdreamError(f"{name}: {cause.strerror or cause}{where} (check that every worker sees the shared "
                              f"folder, its permissions and free space)")
    reason = (str(cause).strip().splitlines() or [""])[0]
    return ZoomdreamError(f"{name}: {type(cause).__name__}: {reason}")
