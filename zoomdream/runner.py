"""The runner: drives a frame source into sinks, and owns progress, interruption, resume and frame ranges.

``render(job)`` resolves a Job through its command's loop module (``config.COMMANDS``), loads the model once,
and runs the source's frames into the sinks the output settings ask for. ``render_piece`` renders frames
``[a, b)`` into a work folder of their own, started from the piece before it (or, for video, from warm-up
frames dreamed and discarded), and ``join_pieces`` joins such pieces into one output, audio added once. A zoom
with ``--interpolate N`` also renders apart: ``render_keys`` dreams its chain of dreamed frames, ``render_between``
makes any segment of the output from them, and ``join_segments`` copies the segments into the output.
"""
from __future__ import annotations

import bisect
import hashlib
import os
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np
from tqdm import tqdm

from zoomdream import media, precision
from zoomdream.config import FIELDS, LOOPS, Job, applies, job_inputs, load_job_file, make_job, save_job
from zoomdream.engine import machine_tile
from zoomdream.errors import Stopped, ZoomdreamError
from zoomdream.loops import loop_module
from zoomdream.loops.common import LoopSource
from zoomdream.media.files import (FRAME_PATTERN, WriteFailed, check_output_target, make_output_folder,
                                   remove_dead_temps, same_file)
from zoomdream.models import LoadedModel, get_backbone, load_model
from zoomdream.settings import MAX_FRAMES, MAX_SIDE, OutputSettings, number
from zoomdream.sinks import (MIN_STREAM, EncoderSink, FrameStore, FramesDirSink, ImageSink, MemorySink, PieceStore,
                             PreviewSink, Resume, SegmentStore, Sink, busy, read_state, segment_path,
                             segment_spans)


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


def check_work(job: Job) -> None:
    """The up-front checks of a loop's work folder, before any model loads: a live render holding it (or the
    frames folder) is named; an interrupted one needs --resume, and a resume whose settings differ names them;
    --resume of a finished render is refused (it would render it again over itself)."""
    out = Path(job.output)
    work = work_folder(out)
    for folder in [work, *([Path(job.frames_dir)] if job.frames_dir else [])]:  # a cluster's driver holds work too
        if busy(folder):
            raise ZoomdreamError(f"another render is using '{folder}' (wait for it to finish, or give this one "
                                 f"another output or --frames-dir)")
    if not interrupted(out):
        if job.resume and out.is_file():
            raise ZoomdreamError(f"'{out}' is finished: there is nothing to resume (leave out --resume to render it "
                                 f"again, or give another output)")
        return
    if not job.resume:
        raise ZoomdreamError(f"an interrupted render exists in {work} (add --resume to continue it, or delete that "
                             f"folder to start over)")
    differ = changed_settings(job, work)
    if differ:
        raise ZoomdreamError(f"cannot resume {work}: {differ} (use the settings in {work / 'job.toml'}, or delete "
                             f"the folder to start over)")


def changed_settings(job: Job, work: Path) -> str:
    """What differs between ``job`` and the interrupted render in ``work`` (its ``job.toml`` and the input's
    fingerprint in its state), in words; "" when nothing that can be compared before the model loads does
    (``precision = "auto"`` and the default tile are pinned only then)."""
    try:
        state, before = read_state(work), make_job(load_job_file(work / "job.toml"))
    except ZoomdreamError:  # no record to compare (a cluster's pieces, an older render): the store decides
        return ""
    unpinned = {"precision": job.precision == "auto", "tile": job.tile is None}
    pinned = replace(job, **{name: getattr(before, name) for name, free in unpinned.items() if free})
    if state["settings"] == pinned.settings_hash() + input_digest(job.input):
        return ""  # the same render (the store compares again once the machine has pinned the settings)
    differ = []
    for name, field in FIELDS.items():
        here, there = getattr(job, name), getattr(before, name)
        if name in job.paths() and name in before.paths():
            here, there = os.path.abspath(here), os.path.abspath(there)
        if field.metadata["affects_frames"] and here != there and not unpinned.get(name):
            differ.append(f"{name} ({_short(there)} there, {_short(here)} here)")
    if not differ and job.input and not state["settings"].endswith(input_digest(job.input)):
        differ.append(f"the input file '{_short(job.input)}' (its content changed since)")
    if not differ:
        return ""
    more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
    return f"{'this setting differs' if len(differ) == 1 else 'these settings differ'}: {', '.join(differ[:3])}{more}"


def _short(value, most: int = 40) -> str:
    text = str(value)
    return text if len(text) <= most else text[:most - 3] + "..."


def _restore_rng(seed: int, state: dict | None) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    if state is not None:
        rng.bit_generator.state = state
    return rng


KEEP_QUEUE = 4  # frames waiting to be kept at most: a slow encoder holds the source back instead of memory


def run(source: FrameSource, sinks: list[Sink], *, seed: int, span: range | None = None,
        store: FrameStore | None = None, settings: str = "", resume: bool = False, start: Resume | None = None,
        warmup: int = 0, progress: bool = True, stop: Callable[[], bool] | None = None) -> int:
    """Make the frames of ``span`` (all of the source's by default) and hand each to the store and the sinks.

    The store, when given, is the resume point (for ``settings``, the job's hash): frames it already holds are
    replayed into the sinks and the source continues after them. Otherwise ``start`` (from an earlier piece)
    or ``warmup`` frames before the span (dreamed and discarded) give the first frame what it needs. Frames
    are kept on a thread of their own (``_Keeper``) while the source makes the next ones, so the source is
    the only serial work. On any exception every kept frame stays and the sinks are aborted. ``stop``, asked
    before each frame, ends the render there the same way (``Stopped``). Returns the number of frames made.
    """
    span = span or range(0, source.total if source.total is not None else 2 ** 62)
    keeper = None
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
        for index, frame in (store.kept(span.start, t) if store else ()):  # what an interrupted render kept
            for sink in sinks:
                sink.write(index, frame)
        keeper = _Keeper(store, sinks)
        total = len(span) if source.total is not None or span.stop < 2 ** 62 else getattr(source, "expected", None)
        dreamer = getattr(source, "dreamer", None)  # counts the dreams: a frame may take none, or many (a loop's 0)
        with tqdm(total=total, initial=t - span.start, desc="frames", unit="frame", disable=not progress,
                  dynamic_ncols=True) as bar:
            while t < span.stop:
                _check_stop(stop)
                frame = source.frame(t, previous, rng)
                if frame is None:
                    break
                carry = {"rng": rng.bit_generator.state, "source": source.carry()}
                keeper.put(t, frame, carry, restartable(source, t))
                previous, t = frame, t + 1
                if dreamer is not None:
                    bar.set_postfix_str(f"{dreamer.dreams} dreams", refresh=False)
                bar.update()
            if bar.total != bar.n:  # the source ended before its estimate (a variable-rate clip), or had none
                bar.total = bar.n
                bar.refresh()
        keeper.finish()
        if store is not None:
            store.flush()
        for sink in sinks:
            sink.close()
        return t - span.start
    except BaseException:
        try:
            if keeper is not None:
                keeper.finish(raise_error=False)  # what was dreamed is kept as far as the store can
        finally:
            if store is not None:
                store.abort()
            for sink in sinks:
                sink.abort()
        raise
    finally:
        source.close()


def restartable(source: FrameSource, t: int) -> bool:
    """Whether frame ``t + 1`` can start from frame ``t`` alone (not so between a zoom's in-between frames)."""
    return source.restart_at(t + 1) == t + 1


class _Keeper:
    """Keeps frames in order on a thread of its own (the store's checkpoint, then each sink) while the source
    makes the next ones. At most ``KEEP_QUEUE`` frames wait: a slow sink makes ``put`` wait, so memory stays
    bounded. An error in keeping stops keeping; it is raised in the render at its next ``put`` or ``finish``."""

    def __init__(self, store: FrameStore | None, sinks: list[Sink]):
        self.store, self.sinks = store, sinks
        self.queue: queue.Queue = queue.Queue(KEEP_QUEUE)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="zoomdream-keeper", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:  # after an error the queue is only drained, so put never blocks for good
                try:
                    _keep(self.store, self.sinks, *item)
                except BaseException as e:  # handed to the render's thread, KeyboardInterrupt included
                    self.error = e

    def put(self, *item) -> None:
        while True:
            self._raise()
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                pass

    def finish(self, raise_error: bool = True) -> None:
        """Wait until every frame given is kept."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if raise_error:
            self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def _check_stop(stop: Callable[[], bool] | None) -> None:
    if stop is not None and stop():
        raise Stopped("stopped on request (resume to continue)")


def _keep(store: FrameStore | None, sinks: list[Sink], index: int, frame: np.ndarray, carry: dict,
          restartable: bool) -> None:
    if store is not None:
        store.keep(index, frame, carry, restartable)
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
    check_output_target(out)
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
    if output is not None:  # every command makes its output's folder, before the model loads
        make_output_folder(output.path)
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
    frames_dir = Path(job.frames_dir) if job.frames_dir else None
    store = SegmentStore(work, frames_dir)
    try:  # the store's folders stay locked from before the model loads until the work folder is gone
        job, source, output = prepare(job, model, protected, store)
        if output.resume and not store.state_path.exists():  # said once the folder is this render's own
            print(f"zoomdream: nothing to resume for {job.output}: starting afresh", file=sys.stderr)
        store.fps, store.crf = source.fps, output.crf  # the segments are encoded as the output will be
        outs = [FramesDirSink(frames_dir)] if frames_dir else []
        if output.preview:
            outs.append(PreviewSink(preview_path(output.path), output.preview))
        run(source, [*outs, *sinks, _JobRecord(job, work)], seed=job.seed, store=store,
            settings=job.settings_hash() + input_digest(job.input), span=range(0, source.total or 2 ** 62),
            resume=output.resume, progress=progress, stop=stop)
        store.write_output(encoder(output, source).writer)  # the segments copied into the output, the audio added
        _save_record(job, output, protected)
        remove_dead_temps(output.path)  # of a render of this output killed while it wrote it (a kill at the join)
        store.remove()
    except (WriteFailed, OSError) as error:  # a full disk, a read-only or vanished folder: its own line
        raise store.fault(error) from None
    finally:
        store.release_unused()  # after a failure: unlock, and take away only what this render made


def _save_record(job: Job, output: OutputSettings, protected: tuple[str, ...]) -> None:
    """``OUT.job.toml``, unless it is the job file this render came from (kept as it is)."""
    if not any(same_file(Path(p), record_path(output.path)) for p in protected):
        save_job(job, record_path(output.path))


class _JobRecord(Sink):
    """Writes ``job.toml`` into the work folder with the first frame, so an interrupted render says how to
    resume it."""

    def __init__(self, job: Job, work: Path):
        self.job, self.work, self.saved = job, work, False

    def write(self, index: int, frame: np.ndarray) -> None:
        if not self.saved:
            save_job(self.job, self.work / "job.toml")
            self.saved = True


def stream_path(work: Path, frames: range, kind: str = "stream") -> Path:
    """Where a piece keeps ``frames`` of the output encoded on their own (``kind`` "joined": by the join)."""
    return Path(work) / f"{kind}-{frames.start:08d}-{frames.stop:08d}.mp4"


class _Only(Sink):
    """Hands ``sink`` the frames of ``frames`` only."""

    def __init__(self, frames: range, sink: Sink):
        self.frames, self.sink = frames, sink

    def write(self, index: int, frame: np.ndarray) -> None:
        if index in self.frames:
            self.sink.write(index, frame)

    def close(self) -> None:
        self.sink.close()

    def abort(self) -> None:
        self.sink.abort()


def _stream_encoder(path: Path, source: FrameSource, crf: int) -> EncoderSink:
    """A part of the output encoded on its own: the output's H.264 settings, without audio (added once, at the
    join), so the parts join without re-encoding."""
    return EncoderSink(path, source.fps, crf=crf)


def render_piece(job: Job, span: range, work: Path, *, start_from: Path | None = None, warmup: int = 8,
                 progress: bool = True, model: LoadedModel | None = None, sinks: tuple[Sink, ...] = (),
                 stream: range | None = None, frames_dir: Path | None = None) -> Path:
    """Render frames ``[span.start, span.stop)`` into ``work`` (a ``PieceStore``: PNG frames, segments and the
    resume state), resumable on its own. Frame ``span.start`` starts from the last frame and carried state of
    the piece in ``start_from``, or, for video, from ``warmup`` frames dreamed and discarded. ``stream``: the
    frames the output takes from this piece alone, kept only as H.264 segments with the output's settings,
    which ``join_pieces`` copies without re-encoding (and, with ``frames_dir``, as PNG frames there too); the
    others stay PNG frames, lossless, for the join's cross-fades. Returns ``work``."""
    job, source, _ = prepare(replace(job, output=None), model)
    if source.total is not None and span.stop > source.total:
        raise ZoomdreamError(f"frames {span.start}-{span.stop - 1} go past the render's {source.total} frames")
    stream = stream or range(0)
    if stream and not span.start <= stream.start < stream.stop <= span.stop:
        raise ZoomdreamError(f"the stream's frames {stream.start}-{stream.stop - 1} must lie in the piece's "
                             f"{span.start}-{span.stop - 1}")
    start = None
    if start_from is not None and span.start > 0:
        if source.restart_at(span.start) != span.start:  # frame span.start is made from frames before span.start-1
            raise ZoomdreamError(f"a piece after another must start right after a dreamed frame (with "
                                 f"--interpolate N, at a multiple of N plus 1), not at frame {span.start}")
        state = read_state(Path(start_from))
        if state["settings"] != job.settings_hash():
            raise ZoomdreamError(f"piece '{start_from}' was rendered with other settings than this job's")
        before = PieceStore(Path(start_from))
        start = before.open(state["settings"], range(*state["span"]), resume=True)
        before.release()
        if start is None or start.next != span.start:
            raise ZoomdreamError(f"piece '{start_from}' does not end at frame {span.start} (render it first)")
    # A resume after the stream starts from the dreamed frame before its end: kept lossless too.
    tail = range(source.restart_at(stream.stop) - 1, stream.stop) if stream else range(0)
    store = PieceStore(Path(work), stream, tail)
    store.fps, store.crf = source.fps, job.crf  # the segments are encoded as the output will be
    outs = [*sinks, *([_Only(store.stream, FramesDirSink(media.make_folder(frames_dir)))] if frames_dir else [])]
    try:
        run(source, outs, seed=job.seed, span=span, store=store, settings=job.settings_hash(), resume=True,
            start=start, warmup=warmup, progress=progress)
    finally:
        store.release()
    return Path(work)


def piece_spans(job: Job, pieces: list[Path], total: int | None) -> list[tuple[int, int]]:
    """The frame span of each piece, checked: rendered with this job's settings, complete, in order, each
    starting after the one before it starts and by the time it ends, the last ending with the render."""
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
    if total is not None and spans[-1][1] < total:
        raise ZoomdreamError(f"the pieces end at frame {spans[-1][1] - 1} of the render's {total} (render the rest "
                             f"first)")
    return spans


def join_parts(spans: list[tuple[int, int]]) -> list[tuple[range, int, bool]]:
    """The output of pieces with ``spans``, in order, as (frames, piece, faded): the frames piece k holds
    alone (from the end of the piece before it to the start of the next), then those it shares with the next
    piece, cross-faded from it into the next (``faded``). Empty parts are left out."""
    parts = []
    for k, (first, end) in enumerate(spans):
        t = spans[k - 1][1] if k else 0
        fade = spans[k + 1][0] if k + 1 < len(spans) else end
        parts += [(range(t, fade), k, False), (range(fade, end), k, True)]
    return [part for part in parts if len(part[0])]


def part_frames(pieces: list[Path], part: tuple[range, int, bool]):
    """The output frames of one part of ``join_parts``, read from the pieces, as (index, frame): a faded part
    goes from piece k's PNG frame to piece k + 1's over its frames; another is piece k's own, from its PNG
    frames or else decoded from its segments."""
    frames, k, faded = part
    if not faded:
        yield from _piece_frames(pieces[k], frames)
        return
    with ThreadPoolExecutor(1) as reader:  # the later piece's frame decodes beside the earlier one's
        for index in frames:
            later = reader.submit(media.read_image, media.frame_path(pieces[k + 1] / "frames", index))
            frame = media.read_image(media.frame_path(pieces[k] / "frames", index))
            weight = (index - frames.start + 1) / (len(frames) + 1)
            yield index, cv2.addWeighted(frame, 1 - weight, later.result(), weight, 0.0)  # rounded, one pass


def _piece_frames(piece: Path, frames: range):
    segments = read_state(piece).get("segments") or []
    decoded: dict[int, np.ndarray] = {}
    for index in frames:
        path = media.frame_path(piece / "frames", index)
        if not path.is_file() and index not in decoded:
            first = next((a for a, b in segments if a <= index < b), None)
            if first is None:
                raise ZoomdreamError(f"piece '{piece}' holds no frame {index} (render it again)")
            decoded = dict(enumerate(media.read_video(segment_path(piece, first)), first))
        yield index, media.read_image(path) if path.is_file() else decoded[index]


def _copied(piece: Path, frames: range) -> list[range] | None:
    """The piece's segments that hold ``frames`` exactly, in order (None: they do not)."""
    held = [range(a, b) for a, b in read_state(piece).get("segments") or [] if frames.start <= a < frames.stop]
    ends = [frames.start] + [r.stop for r in held]
    return held if held and all(r.start == end for r, end in zip(held, ends)) and ends[-1] == frames.stop else None


def _planned(pieces: list[Path], spans: list[tuple[int, int]]) -> list[tuple[list, Path, bool]]:
    """The output as streams to join, in order: (parts, stream file, whether the join encodes it). The frames
    a piece holds alone in segments are joined as they are; consecutive parts the join encodes (the seams, and
    a piece's frames too few for a segment) make one stream, in the folder of the piece its first frame is
    from. Every stream has MIN_STREAM frames or more (a short one takes in the next, else the one before), so
    all have the same B-frame delay."""
    segments = []
    for part in join_parts(spans):
        frames, k, faded = part
        copied = None if faded else _copied(pieces[k], frames)
        if copied:
            segments += [([(held, k, False)], segment_path(pieces[k], held.start)) for held in copied]
        elif segments and segments[-1][1] is None:
            segments[-1][0].append(part)
        else:
            segments.append(([part], None))
    i = 0
    while i < len(segments) and len(segments) > 1:
        parts, stream = segments[i]
        if stream is None and sum(len(frames) for frames, _, _ in parts) < MIN_STREAM:
            low = min(i, len(segments) - 2)
            segments[low:low + 2] = [(segments[low][0] + segments[low + 1][0], None)]
            i = low
        else:
            i += 1
    plan = []
    for parts, stream in segments:
        frames, k, faded = parts[0]
        here = stream_path(pieces[k + faded], range(frames.start, parts[-1][0].stop), "joined")
        plan.append((parts, stream or here, stream is None))
    return plan


def _write(pieces: list[Path], parts: list, outs: list[Sink], segment: Sink | None = None) -> None:
    """Hand the frames of ``parts`` to ``outs`` and ``segment``; then close ``segment`` (abort it on failure)."""
    try:
        for part in parts:
            for index, frame in part_frames(pieces, part):
                for out in [*outs, *([segment] if segment else [])]:
                    out.write(index, frame)
        if segment is not None:
            segment.close()
    except BaseException:
        if segment is not None:
            segment.abort()
        raise


def encode_seams(job: Job, pieces: list[Path], model: LoadedModel | None = None, folder: Path | None = None,
                 sinks: tuple[Sink, ...] = ()) -> None:
    """Encode the streams the join of ``pieces`` makes itself (the cross-faded seams, and parts too short to
    join as they are; their frames handed to ``sinks`` too), those kept in the piece work folder ``folder`` only
    where given, so that workers share them out before the join; a stream already made is kept."""
    job, source, output = prepare(job, model)
    try:
        for parts, stream, here in _planned(pieces, piece_spans(job, pieces, source.total)):
            if here and not stream.is_file() and (folder is None or stream.parent == Path(folder)):
                _write(pieces, parts, list(sinks), _stream_encoder(stream, source, output.crf))
    finally:
        source.close()


def join_pieces(job: Job, pieces: list[Path], model: LoadedModel | None = None,
                sinks: tuple[Sink, ...] = ()) -> None:
    """Join consecutive pieces into ``job.output`` (and hand every frame to any extra ``sinks``), with the
    source's audio added once.

    A piece may start before the one ahead of it ends (a video piece rendered from earlier frames on its own):
    over the frames both hold, the join cross-fades from the earlier piece to the later one, so the seam
    dissolves over the overlap instead of cutting from one dream history to another.

    The output is made from H.264 streams without re-encoding them (``write_segments``, as a whole render makes
    it from its segments; a GIF decodes them): the frames a piece holds alone come from its segments where it
    kept them (``render_piece``'s ``stream``); the cross-faded overlaps, and parts with no segments, are encoded
    here with the same settings into streams of their own, unless ``encode_seams`` made them already. Only
    those frames are read, unless ``sinks`` are given (then the frames in segments are decoded for them)."""
    job, source, output = prepare(job, model)
    pieces = [Path(work) for work in pieces]
    final = encoder(output, source)
    outs = list(sinks)
    try:
        plan = _planned(pieces, piece_spans(job, pieces, source.total))
        for parts, stream, here in plan:
            encode = here and not stream.is_file()
            if encode or outs:
                _write(pieces, parts, outs, _stream_encoder(stream, source, output.crf) if encode else None)
        final.writer.write_segments([(stream, sum(len(frames) for frames, _, _ in parts))
                                     for parts, stream, _ in plan])
        for out in outs:
            out.close()
    except BaseException:
        for out in [*outs, final]:
            out.abort()
        raise
    finally:
        source.close()
    save_job(job, record_path(output.path))
    remove_dead_temps(output.path)


# --------------------------------------------------------------------------------------------------------------
# Keyed renders (a zoom with --interpolate N): the chain of dreamed frames, and the frames between them apart


def key_plan(job: Job, model: LoadedModel | None = None) -> tuple[list[int], list[range]]:
    """The dreamed frames of a keyed render in chain order (the source's ``keys``), and the segments a whole
    render of it encodes (``segment_spans``), which ``render_between`` makes apart."""
    job, source, _ = prepare(replace(job, output=None), model)
    try:
        return source.keys(), segment_spans([restartable(source, t) for t in range(source.total)])
    finally:
        source.close()


def render_keys(job: Job, work: Path, *, model: LoadedModel | None = None, sinks: tuple[Sink, ...] = (),
                progress: bool = True) -> Path:
    """Dream the chain of a keyed render into ``work``: its i-th dreamed frame as PNG frame i (lossless, as every
    frame between two is made from them) and the resume state, so a killed render continues where it was. The
    serial part of the render: ``render_between`` makes the rest from these frames. Returns ``work``."""
    job, source, _ = prepare(replace(job, output=None), model)
    chain = _Chain(source)
    store = FrameStore(Path(work))
    try:
        run(chain, list(sinks), seed=job.seed, span=range(chain.total), store=store, settings=job.settings_hash(),
            resume=True, progress=progress)
    finally:
        store.release()
    return Path(work)


def render_between(job: Job, keys: Path, frames: range, stream: Path, *, model: LoadedModel | None = None,
                   sinks: tuple[Sink, ...] = ()) -> Path:
    """Frames ``frames`` of a keyed render, made from its dreamed frames in ``keys`` (``render_keys``) alone and
    encoded into ``stream`` with the output's settings, no audio: a segment of the output (``key_plan``), which
    ``join_segments`` copies in. A frame between two dreamed ones depends on those two and the camera path
    only, so any worker makes it as a whole render does. Returns ``stream``."""
    job, source, _ = prepare(replace(job, output=None), model)
    state = read_state(Path(keys))
    needed = bisect.bisect_left(source.keys(), frames.stop - 1) + 1
    if state["settings"] != job.settings_hash() or state["done"] < needed:
        source.close()
        raise ZoomdreamError(f"frames {frames.start}-{frames.stop - 1} need the first {needed} dreamed frames of "
                             f"this job's settings, which '{keys}' does not hold (run render_keys first)")
    run(_Between(source, Path(keys) / "frames"), [*sinks, _stream_encoder(Path(stream), source, job.crf)],
        seed=job.seed, span=frames, start=Resume(frames.start, None, None), progress=False)
    return Path(stream)


def join_segments(job: Job, streams: list[tuple[Path, int]], model: LoadedModel | None = None,
                  protected: tuple[str, ...] = ()) -> None:
    """Make ``job.output`` from the segments of a whole render, each encoded apart as (file, frames), by a
    stream copy with the audio added once (as a whole render makes it from its own), and save the job
    beside it."""
    job, source, output = prepare(job, model, protected)
    try:
        encoder(output, source).writer.write_segments([(Path(path), frames) for path, frames in streams])
    finally:
        source.close()
    _save_record(job, output, protected)
    remove_dead_temps(output.path)


class _Chain(LoopSource):
    """A keyed source's dreamed frames as a source of their own: frame i is its i-th dreamed frame."""

    needs_previous = True

    def __init__(self, source):
        self.source, self.keys = source, source.keys()
        self.fps, self.total = source.fps, len(self.keys)

    @property
    def first(self) -> np.ndarray | None:
        return self.source.first

    @first.setter
    def first(self, frame: np.ndarray | None) -> None:
        self.source.first = frame

    def frame(self, i: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        return self.source.frame(0, None, rng) if i == 0 else self.source.key(self.keys[i - 1], previous)

    def carry(self) -> dict:
        return self.source.carry()

    def restore(self, carry: dict) -> None:
        self.source.restore(carry)

    def close(self) -> None:
        self.source.close()


class _Between(LoopSource):
    """A keyed source's frames made from its dreamed frames kept in ``folder`` (``render_keys``)."""

    def __init__(self, source, folder: Path):
        self.source, self.keys, self.folder = source, source.keys(), folder
        self.fps, self.total = source.fps, source.total
        self.read: dict[int, np.ndarray] = {}
        source.first = self.key(0)

    def key(self, i: int) -> np.ndarray:
        if i not in self.read:
            self.read = {k: v for k, v in self.read.items() if k == i - 1}  # the pair in use, at most
            self.read[i] = media.read_image(media.frame_path(self.folder, i))
        return self.read[i]

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        i = bisect.bisect_right(self.keys, t) - 1
        return self.key(i) if self.keys[i] == t else self.source.between(t, self.key(i), self.key(i + 1))

    def close(self) -> None:
        self.source.close()


def render_image(job: Job, progress: bool = True, model: LoadedModel | None = None) -> np.ndarray:
    """Dream one still; writes ``job.output`` when set and returns the uint8 result."""
    memory = MemorySink()
    render(job, progress, model, (memory,))
    return memory.frames[0]


render_zoom = render_video = render  # the loops need no more than render()
