"""Pieces: frames ``[a, b)`` of a render in a work folder of their own (a cluster's chunk), started from the
piece before (or, for video, from warm-up frames dreamed and discarded), and their join into one output.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from zoomdream import media
from zoomdream.config import Job, save_job
from zoomdream.errors import ZoomdreamError
from zoomdream.media.files import remove_dead_temps
from zoomdream.models import LoadedModel
from zoomdream.runner.frames import FrameSource, run
from zoomdream.runner.jobs import encoder, prepare, record_path
from zoomdream.sinks import EncoderSink, FramesDirSink, Sink
from zoomdream.store import MIN_STREAM, PieceStore, read_state, segment_path


def stream_path(work: Path, frames: range, kind: str = "stream") -> Path:
    """Where a piece keeps ``frames`` of the output encoded on their own (``kind`` "joined": by the join)."""
    return Path(work) / f"{kind}-{frames.start:08d}-{frames.stop:08d}.mp4"


class _Only(Sink):
    """Hands ``sink`` the frames of ``frames`` only."""

    def __init__(self, frames: range, sink: Sink):
        self.frames, self.sink = frames, sink
        self.before_store = sink.before_store

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
    with segment if segment is not None else nullcontext():
        for part in parts:
            for index, frame in part_frames(pieces, part):
                for out in [*outs, *([segment] if segment else [])]:
                    out.write(index, frame)


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
    with ExitStack() as closing:  # at the end each sink is closed (aborted on any exception), then the source
        closing.callback(source.close)
        for sink in [final, *reversed(outs)]:  # exited in reverse: the outs in order, then the output
            closing.enter_context(sink)
        plan = _planned(pieces, piece_spans(job, pieces, source.total))
        for parts, stream, here in plan:
            encode = here and not stream.is_file()
            if encode or outs:
                _write(pieces, parts, outs, _stream_encoder(stream, source, output.crf) if encode else None)
        final.writer.write_segments([(stream, sum(len(frames) for frames, _, _ in parts))
                                     for parts, stream, _ in plan])
    save_job(job, record_path(output.path))
    remove_dead_temps(output.path)
