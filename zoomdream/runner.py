"""The runner: drives a frame source into sinks, and owns progress, interruption, resume and frame ranges.

``render(job)`` resolves a Job through its command's loop module (``config.COMMANDS``), loads the model once,
and runs the source's frames into the sinks the output settings ask for. ``render_piece`` renders frames
``[a, b)`` into a work folder of their own, started from the piece before it (or, for video, from warm-up
frames dreamed and discarded), and ``join_pieces`` encodes such pieces into one output, audio added once.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib import import_module
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
from tqdm import tqdm

from zoomdream import media, precision
from zoomdream.config import COMMANDS, LOOPS, Job, applies, save_job
from zoomdream.engine import machine_tile
from zoomdream.errors import Stopped, ZoomdreamError
from zoomdream.media.files import FRAME_PATTERN
from zoomdream.models import LoadedModel, get_backbone, load_model
from zoomdream.settings import MAX_FRAMES, MAX_SIDE, OutputSettings, number
from zoomdream.sinks import EncoderSink, FrameStore, ImageSink, MemorySink, PreviewSink, Resume, Sink, read_state


class FrameSource(Protocol):
    """A loop kind: makes frame ``t`` from typed settings and what the frames before it left.

    ``previous`` is frame ``t - 1`` (uint8), or None where the source starts afresh (frame 0, or the first
    warm-up frame of a video piece). ``carry()`` / ``restore()`` are the JSON-able state frame ``t + 1`` needs
    besides the previous frame (the zoom's colour reference), kept with each frame for resume and pieces.
    ``restart_at(t)``: on resume, where to continue when frame ``t`` needs more than frame ``t - 1`` (an
    interpolated frame needs the dreamed frame after it). ``first`` is frame 0, set by the runner where the
    source did not make it. ``loops.common.LoopSource`` gives the defaults.
    """

    fps: float
    total: int | None  # frames in all (None: until the source runs out)
    needs_previous: bool  # True: frame t > 0 cannot start afresh (a feedback chain)
    audio: dict  # the audio the output should carry: VideoWriter's audio_from, audio_start, audio_duration
    first: np.ndarray | None

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None: ...
    def carry(self) -> dict: ...
    def restore(self, carry: dict) -> None: ...
    def restart_at(self, t: int) -> int: ...
    def close(self) -> None: ...


def loop_module(command: str):
    return import_module(COMMANDS[command].module)


def pin_machine(job: Job) -> Job:
    """Pin ``precision=auto`` and the default tile to what this machine picks, so the saved job reproduces the
    same frames elsewhere."""
    return replace(job, precision=precision.resolve(job.precision, job.model, job.weights),
                   tile=machine_tile() if job.tile is None else job.tile)


def work_folder(output: Path) -> Path:
    return output.with_name(output.name + ".zoomdream")


def interrupted(output: Path) -> bool:
    """Whether an interrupted render of ``output`` left frames to resume (a whole render's or a chunk's)."""
    work = work_folder(output)
    return (work / "state.json").is_file() or any(work.glob("*/state.json"))


def _restore_rng(seed: int, state: dict | None) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    if state is not None:
        rng.bit_generator.state = state
    return rng


def run(source: FrameSource, sinks: list[Sink], *, seed: int, span: range | None = None,
        store: FrameStore | None = None, settings: str = "", resume: bool = False, start: Resume | None = None,
        warmup: int = 0, progress: bool = True, stop: Callable[[], bool] | None = None) -> int:
    """Make the frames of ``span`` (all of the source's by default) and hand each to the store and the sinks.

    The store, when given, is the resume point (for ``settings``, the job's hash): frames it already holds are
    replayed into the sinks and the source continues after them. Otherwise ``start`` (from an earlier piece)
    or ``warmup`` frames before the span (dreamed and discarded) give the first frame what it needs. Keeping
    a frame runs on a worker thread while the next one is dreamed. On any exception every kept frame stays and
    the sinks are aborted. ``stop``, asked before each frame, ends the render there the same way (``Stopped``).
    Returns the number of frames made.
    """
    span = span or range(0, source.total if source.total is not None else 2 ** 62)
    worker = ThreadPoolExecutor(max_workers=1)
    pending = None
    try:
        resumed = store.open(settings, span, resume) if store else None
        point = resumed or start
        if point is None and span.start > 0:
            point = _warm_up(source, span.start, warmup, seed)
        t, previous = (point.next, point.previous) if point else (span.start, None)
        if point is not None and point.carry:
            source.restore(point.carry["source"])
        if point is not None and point.first is not None:
            source.first = point.first
            if store is not None and span.start > 0:
                store.keep_first(point.first)
        restart = source.restart_at(t) if resumed is not None else t
        if restart != t:  # frame t needs an earlier frame than t - 1
            t = max(restart, span.start + 1)
            previous = store.load(t - 1)
        rng = _restore_rng(seed, point.carry["rng"] if point and point.carry else None)
        for index in range(span.start, t):  # frames an interrupted render already kept
            frame = store.load(index)
            for sink in sinks:
                sink.write(index, frame)
        total = len(span) if source.total is not None or span.stop < 2 ** 62 else None
        dreamer = getattr(source, "dreamer", None)  # counts the dreams: a frame may take none, or many (a loop's 0)
        with tqdm(total=total, initial=t - span.start, desc="frames", unit="frame", disable=not progress,
                  dynamic_ncols=True) as bar:
            while t < span.stop:
                _check_stop(stop)
                frame = source.frame(t, previous, rng)
                if frame is None:
                    break
                carry = {"rng": rng.bit_generator.state, "source": source.carry()}
                if pending is not None:
                    pending.result()
                pending = worker.submit(_keep, store, sinks, t, frame, carry)
                previous, t = frame, t + 1
                if dreamer is not None:
                    bar.set_postfix_str(f"{dreamer.dreams} dreams", refresh=False)
                bar.update()
        if pending is not None:
            pending.result()
        for sink in sinks:
            sink.close()
        return t - span.start
    except BaseException:
        try:
            if pending is not None:
                pending.result()
        finally:
            for sink in sinks:
                sink.abort()
        raise
    finally:
        worker.shutdown()
        source.close()
        if store is not None:
            store.release()


def _check_stop(stop: Callable[[], bool] | None) -> None:
    if stop is not None and stop():
        raise Stopped("stopped on request (resume to continue)")


def _keep(store: FrameStore | None, sinks: list[Sink], index: int, frame: np.ndarray, carry: dict) -> None:
    if store is not None:
        store.keep(index, frame, carry)
    for sink in sinks:
        sink.write(index, frame)


def _warm_up(source: FrameSource, first: int, warmup: int, seed: int) -> Resume:
    """Dream ``warmup`` frames before ``first`` and discard them, so frame ``first`` starts from a coherent
    previous frame without the pieces before it."""
    if source.needs_previous:
        raise ZoomdreamError(f"frame {first} of this loop needs frame {first - 1}: render the piece before it "
                             f"first and start from it")
    previous, rng = None, np.random.default_rng(seed)
    for t in range(max(0, first - warmup), first):
        previous = source.frame(t, previous, rng)
    return Resume(first, previous, {"rng": rng.bit_generator.state, "source": source.carry()}, source.first)


# --------------------------------------------------------------------------------------------------------------
# Jobs: resolve, build, render


def _checked_output(job: Job, protected: tuple[str, ...]) -> OutputSettings:
    """The output settings, checked, and refused where writing would destroy an input: compared by resolved
    path and by inode, so links and ./ spellings are caught. ``protected``: the job file the job came from
    (re-rendering ``OUT.job.toml`` leaves that record as it is)."""
    out = Path(job.output)
    written = [out, preview_path(out), record_path(out)]
    written += [Path(job.export_schedules)] if job.export_schedules else []
    inputs = job_inputs(job)
    frames_dir = Path(job.frames_dir) if job.frames_dir else work_folder(out) / "frames"
    for source in [*inputs, *map(Path, protected)]:
        for target in written[:2] if source in map(Path, protected) else written:
            if same_file(source, target):
                raise ZoomdreamError(f"output '{target}' would overwrite the input '{source}' (choose another "
                                     f"output name)")
        if same_file(source.parent, frames_dir) and FRAME_PATTERN.match(source.name):
            raise ZoomdreamError(f"input '{source}' lies in the frames folder '{frames_dir}' that this render "
                                 f"writes (move it, or give another --frames-dir)")
    gif_fps = None if job.gif_fps is None else number(job.gif_fps, "gif_fps", low=0.01, high=1000)
    gif_width = None if job.gif_width is None else number(job.gif_width, "gif_width", low=2, high=MAX_SIDE,
                                                           integer=True)
    return OutputSettings(out, crf=number(job.crf, "crf", low=0, high=51, integer=True), gif_fps=gif_fps,
                          gif_width=gif_width, frames_dir=Path(job.frames_dir) if job.frames_dir else None,
                          preview=number(job.preview, "preview", low=0, high=MAX_FRAMES, integer=True),
                          resume=job.resume)


def input_digest(path: str | None) -> str:
    """A short fingerprint of an input file's size and its first and last MiB: a resume from another file
    under the same name is refused, at the cost of reading 2 MiB, not the whole clip."""
    if not path or not os.path.isfile(path):
        return ""
    digest = hashlib.sha256(str(os.path.getsize(path)).encode())
    with open(path, "rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, os.path.getsize(path) - (1 << 20)))
        digest.update(f.read(1 << 20))
    return "-" + digest.hexdigest()[:12]


def encoder(output: OutputSettings, source: FrameSource) -> EncoderSink:
    """The output file's encoder, at the source's rate and with its audio."""
    return EncoderSink(output.path, source.fps, crf=output.crf, gif_fps=output.gif_fps,
                       gif_width=output.gif_width, **source.audio)


def preview_path(output: Path) -> Path:
    """Where ``--preview`` keeps the latest frame: ``OUT.preview.png``."""
    return output.with_name(output.stem + ".preview.png")


def record_path(output: Path) -> Path:
    """Where a render's resolved settings are saved: ``OUT.job.toml``."""
    return output.with_name(output.stem + ".job.toml")


def job_inputs(job: Job) -> list[Path]:
    """The files a job reads, which nothing it writes may be."""
    return [Path(p) for p in (job.input, job.guide, job.weights, job.audio) if p and p != "random"]


def same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def check_job(job: Job, protected: tuple[str, ...] = ()):
    """Resolve and check a job before any work (and before its model loads). Returns (its loop module, the
    loop's typed settings, the job with what its inputs decided pinned, the output settings or None)."""
    module = loop_module(job.command)
    settings = module.resolve(job)  # every user value checked here, before the model loads
    job = replace(job, **getattr(settings, "pins", {}))  # what the inputs decided: a track's length and hash
    if job.layers is None and applies(job, "layers"):  # the saved job names the layers it dreams
        job = replace(job, layers=get_backbone(job.model).default_layers)
    output = _checked_output(job, protected) if job.output else None
    if output and output.path.suffix.lower() not in module.OUTPUTS:
        raise ZoomdreamError(f"cannot write '{output.path}': use one of {', '.join(module.OUTPUTS)}")
    return module, settings, job, output


def prepare(job: Job, model: LoadedModel | None = None, protected: tuple[str, ...] = (),
            store: FrameStore | None = None):
    """Resolve and check everything before any work (``check_job``); then lock the store's folders (a busy one
    fails at once), load the model and build the source. Returns (job with precision pinned, source, output
    settings)."""
    module, settings, job, output = check_job(job, protected)
    if job.export_schedules:
        from zoomdream.curves import export_schedules

        export_schedules(settings, job.export_schedules, job)
    if store is not None:
        store.lock()
    if not getattr(module, "NEEDS_MODEL", True):  # a loop that dreams nothing (interpolate)
        return job, module.Source(settings, None), output
    job = pin_machine(job)
    engine = settings.engine
    model = model or load_model(engine.model, engine.weights, job.precision)
    return job, module.Source(settings, model), output


def render(job: Job, progress: bool = True, model: LoadedModel | None = None, sinks: tuple[Sink, ...] = (),
           protected: tuple[str, ...] = (), stop: Callable[[], bool] | None = None) -> None:
    """Render a job to its output (and to any extra ``sinks``). ``protected``: more files the output must not
    overwrite (the job file it came from). ``stop``: asked before each frame (a still: each ascent step); when
    it answers True the render ends with ``Stopped``, resumable like an interrupted one."""
    if job.command not in LOOPS:  # a still: no frames folder, no resume; progress in ascent steps
        job, source, output = prepare(job, model, protected)
        outs = [ImageSink(output.path)] if output else []
        with tqdm(total=source.steps, desc="dreaming", unit="step", disable=not progress,
                  dynamic_ncols=True) as bar:
            source.on_step = lambda: (bar.update(), _check_stop(stop))
            run(source, [*outs, *sinks], seed=job.seed, progress=False, stop=stop)
        return
    if not job.output:
        raise ZoomdreamError("no output file given (add -o OUT)")
    work = work_folder(Path(job.output))
    store = FrameStore(work, Path(job.frames_dir) if job.frames_dir else None)
    try:
        job, source, output = prepare(job, model, protected, store)
    except BaseException:
        store.release_unused()
        raise
    outs = [encoder(output, source)]
    if output.preview:
        outs.append(PreviewSink(preview_path(output.path), output.preview))
    run(source, [*outs, *sinks, _JobRecord(job, work)], seed=job.seed, store=store,
        settings=job.settings_hash() + input_digest(job.input), span=range(0, source.total or 2 ** 62),
        resume=output.resume, progress=progress, stop=stop)
    if not any(same_file(Path(p), record_path(output.path)) for p in protected):
        save_job(job, record_path(output.path))
    store.remove()


class _JobRecord(Sink):
    """Writes ``job.toml`` into the work folder with the first frame, so an interrupted render says how to
    resume it."""

    def __init__(self, job: Job, work: Path):
        self.job, self.work, self.saved = job, work, False

    def write(self, index: int, frame: np.ndarray) -> None:
        if not self.saved:
            save_job(self.job, self.work / "job.toml")
            self.saved = True


def render_piece(job: Job, span: range, work: Path, *, start_from: Path | None = None, warmup: int = 8,
                 progress: bool = True, model: LoadedModel | None = None, sinks: tuple[Sink, ...] = ()) -> Path:
    """Render frames ``[span.start, span.stop)`` into ``work`` (PNG frames and resume state), resumable on its
    own. Frame ``span.start`` starts from the last frame and carried state of the piece in ``start_from``,
    or, for video, from ``warmup`` frames dreamed and discarded. Returns ``work``."""
    job, source, _ = prepare(replace(job, output=None), model)
    if source.total is not None and span.stop > source.total:
        raise ZoomdreamError(f"frames {span.start}-{span.stop - 1} go past the render's {source.total} frames")
    start = None
    if start_from is not None and span.start > 0:
        if source.restart_at(span.start) != span.start:  # frame span.start is made from frames before span.start-1
            raise ZoomdreamError(f"a piece after another must start right after a dreamed frame (with "
                                 f"--interpolate N, at a multiple of N plus 1), not at frame {span.start}")
        state = read_state(Path(start_from))
        if state["settings"] != job.settings_hash():
            raise ZoomdreamError(f"piece '{start_from}' was rendered with other settings than this job's")
        before = FrameStore(Path(start_from))
        start = before.open(state["settings"], range(*state["span"]), resume=True)
        before.release()
        if start is None or start.next != span.start:
            raise ZoomdreamError(f"piece '{start_from}' does not end at frame {span.start} (render it first)")
    run(source, list(sinks), seed=job.seed, span=span, store=FrameStore(Path(work)), settings=job.settings_hash(),
        resume=True, start=start, warmup=warmup, progress=progress)
    return Path(work)


def join_pieces(job: Job, pieces: list[Path], model: LoadedModel | None = None,
                sinks: tuple[Sink, ...] = ()) -> None:
    """Encode the frames of consecutive pieces into ``job.output`` (and hand them to any extra ``sinks``), with
    the source's audio added once.

    A piece may start before the one ahead of it ends (a video piece rendered from earlier frames on its own):
    over the frames both hold, the join cross-fades from the earlier piece to the later one, so the seam
    dissolves over the overlap instead of cutting from one dream history to another."""
    job, source, output = prepare(job, model)
    outs = [encoder(output, source), *sinks]
    pieces = [Path(work) for work in pieces]
    try:
        spans, low = [], 0  # a piece may start from frame `low` (the end of the piece two back) to frame t
        for work in pieces:
            state = read_state(work)
            first, end = state["span"]
            t = spans[-1][1] if spans else 0
            if state["settings"] != job.settings_hash():
                raise ZoomdreamError(f"piece '{work}' was rendered with other settings than this job's")
            if not low <= first <= t < end or state["done"] != end - first:
                needs = f"frame {t} next" if low == t else f"a piece starting at frame {low} to {t}"
                raise ZoomdreamError(f"piece '{work}' holds {state['done']} of frames {first}-{end - 1}, but the "
                                     f"join needs {needs} (give the pieces in order, each complete)")
            low = max(t, first + 1)
            spans.append((first, end))
        if not spans:
            raise ZoomdreamError("no pieces to join (give the work folders of the pieces, in order)")
        if source.total is not None and spans[-1][1] < source.total:
            raise ZoomdreamError(f"the pieces end at frame {spans[-1][1] - 1} of the render's {source.total} "
                                 f"(render the rest first)")
        t = 0
        for k, (work, (first, end)) in enumerate(zip(pieces, spans)):
            fade = spans[k + 1][0] if k + 1 < len(spans) else end  # from here on, fade into the next piece
            for index in range(t, end):
                frame = media.read_image(media.frame_path(work / "frames", index))
                if index >= fade:
                    later = media.read_image(media.frame_path(pieces[k + 1] / "frames", index))
                    weight = (index - fade + 1) / (end - fade + 1)
                    frame = np.rint((1 - weight) * frame + weight * later.astype(np.float32)).astype(np.uint8)
                for out in outs:
                    out.write(index, frame)
            t = end
        for out in outs:
            out.close()
    except BaseException:
        for out in outs:
            out.abort()
        raise
    finally:
        source.close()
    save_job(job, record_path(output.path))


def render_image(job: Job, progress: bool = True, model: LoadedModel | None = None) -> np.ndarray:
    """Dream one still; writes ``job.output`` when set and returns the uint8 result."""
    memory = MemorySink()
    render(job, progress, model, (memory,))
    return memory.frames[0]


render_zoom = render_video = render  # the loops need no more than render()
