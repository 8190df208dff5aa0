"""The driver: checks every job before any work, plans it into tasks, and hands them to a pool of workers.

Frames cross machines as files, not through Ray's object store: every path of a job (inputs, output, work and
frames folders) must name the same file on every machine, so a cluster needs a shared folder (NFS, a cloud
file system) mounted at the same place everywhere; paths are made absolute where the command runs. Files make a
chunk resumable: a worker that dies mid-chunk is restarted by Ray and its chunk retried, continuing from the
frames it had kept (the runner's resume is exact), and Ctrl-C keeps every kept frame for ``--resume``. Each
chunk keeps the frames the output takes from it alone as H.264 segments of its own (PNG only for the frames its
seams cross-fade); the workers then encode the cross-faded seams, and the join copies every stream into the
output without re-encoding, adding the audio once."""
from __future__ import annotations

import os
from bisect import bisect_left
from dataclasses import fields, replace
from pathlib import Path

from zoomdream import runner
from zoomdream.cluster.flags import WARMUP
from zoomdream.cluster.pool import Pool, Task, open_pool
from zoomdream.cluster.ray_api import require_ray
from zoomdream.config import LOOPS, Job
from zoomdream.curves import export_schedules
from zoomdream.errors import ZoomdreamError
from zoomdream.settings import number
from zoomdream.store import FrameStore


def main(args, jobs: list[Job], names: list[str], protected: tuple[str, ...] = ()) -> None:
    """Run the command's jobs on a cluster: `video` in chunks, `render` as whole jobs over the workers."""
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
    order = sorted(range(len(jobs)), key=lambda i: -checked[i][1].cost())
    tasks = [Task(i, "render", (replace(jobs[i], resume=True), protected), names[i]) for i in order]
    with open_pool(pool, address, workers, len(tasks)) as p:
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
    not forget its history, so a cut shows; the fade makes a seam flicker like any other frame step. Each chunk
    keeps its frames in ``OUT.zoomdream/chunk-A-B-warmupW/``, resumable on its own. Returns the chunks' frame
    ranges, warm-up excluded."""
    job = absolute(job)
    if job.command != "video":
        raise ZoomdreamError(f"only a video job splits into chunks, not a {job.command} (a zoom's dreamed frames "
                             f"are a feedback chain: each needs the one before it; with --interpolate N the frames "
                             f"between them go to the workers: `zoomdream zoom ... --interpolate 4 --cluster`)")
    total, settings, checked = check(job)
    if total is None:
        raise ZoomdreamError(f"the length of '{job.input}' is unknown, so it cannot be split into chunks (re-mux it "
                             f"into an .mp4 or .mkv, or render it without --chunks)")
    work = _work_folder(job)
    # The driver holds the output's work folder until it is gone: a second driver, or a render of the same
    # output, is refused here, before any worker starts or any file is written (see store.FrameStore).
    claim = FrameStore(work, frames_dir=work)
    claim.lock()
    try:
        _export_schedules(job, settings, checked)
        step = job.interpolate  # chunks start on dreamed frames where the frames between are interpolated
        with open_pool(pool, address, workers, chunks) as p:
            spans = chunk_spans(total, chunks or len(p.actors), step)
            # One precision and tile for every chunk; any work folder left now is the caller's to resume
            # (checked).
            pinned = replace(p.call("pin", job), resume=True, export_schedules=None)
            pieces = chunk_pieces(spans, warmup, fade, step)
            folders = [str(work / f"chunk-{a:08d}-{b:08d}-warmup{w}") for a, b, w in pieces]
            dreamed = sum(b - a for a, b, _ in pieces)  # the warm-up frames that fade into a seam are dreamed too
            label = f"frames ({total} + {dreamed - total} warm-up)" if dreamed > total else "frames"
            p.run(_chunk_tasks(pinned, pieces, folders), total=dreamed, progress=progress, on_progress=on_progress,
                  stop_on_error=True, label=label)
            # The seams (W cross-faded frames each) encoded on the workers at once; the join then only copies.
            p.run([Task(len(pieces) + i, "seams", (pinned, folders, folder), f"the seam in {folder}")
                   for i, folder in enumerate(folders)], total=None, progress=False, stop_on_error=True)
            p.call("join", pinned, folders)
        claim.remove()
    finally:
        claim.release_unused()
    return spans


def _chunk_tasks(pinned: Job, pieces: list[tuple[int, int, int]], folders: list[str]) -> list[Task]:
    """A task a chunk, each encoding the frames the output takes from it alone. Only the first chunk rewrites
    the preview: two workers writing one file would race on its temporary."""
    streams = chunk_streams(pieces)
    return [Task(i, "piece", (replace(pinned, preview=pinned.preview if i == 0 else 0), (a, b), folder, w,
                              streams[i]), f"frames {a}-{b - 1}")
            for i, ((a, b, w), folder) in enumerate(zip(pieces, folders))]


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
    work = _work_folder(job)
    claim = FrameStore(work, frames_dir=work)  # held by the driver until the output is made (see render_chunks)
    claim.lock()
    try:
        _export_schedules(job, settings, checked)
        with open_pool(pool, address, workers, None) as p:
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


# --------------------------------------------------------------------------------------------------------------
# Planning: which frames each task makes


def keyed(job: Job) -> bool:
    """Whether a job's dreamed frames are a chain apart from the frames between them (a zoom with
    --interpolate N), which ``render_zoom`` makes on several workers."""
    return job.command == "zoom" and isinstance(job.interpolate, int) and job.interpolate > 1


def _export_schedules(job: Job, settings, checked: Job) -> None:
    """``--export-schedules``, written once by the driver before any frame: the workers' jobs leave it out."""
    if job.export_schedules:
        export_schedules(settings, job.export_schedules, checked)


def chunk_streams(pieces: list[tuple[int, int, int]]) -> list[tuple[int, int] | None]:
    """The frames each chunk encodes on its worker: those the output takes from it alone (its range, less the
    frames cross-faded into the next chunk, which the seams encode)."""
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
    if not job.output:
        raise ZoomdreamError("no output file given (add -o OUT)")
    _, settings, checked, _ = runner.check_job(job, protected)
    if job.command not in LOOPS:
        return 1, settings, checked
    runner.check_work(checked)
    return getattr(settings, "frames", None), settings, checked


def _work_folder(job: Job) -> Path:
    return runner.work_folder(Path(job.output))


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
