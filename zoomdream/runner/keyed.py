"""Keyed renders (a zoom with ``--interpolate N``) made apart: ``render_keys`` dreams the chain of dreamed frames,
``render_between`` makes any segment of the output from them, and ``join_segments`` copies the segments in.
"""
from __future__ import annotations

import bisect
from dataclasses import replace
from pathlib import Path

import numpy as np

from zoomdream import media
from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError
from zoomdream.loops.common import LoopSource
from zoomdream.media.files import remove_dead_temps
from zoomdream.models import LoadedModel
from zoomdream.runner.frames import restartable, run
from zoomdream.runner.jobs import _save_record, encoder, prepare
from zoomdream.runner.pieces import _stream_encoder
from zoomdream.sinks import Sink
from zoomdream.store import FrameStore, Resume, read_state, segment_spans


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
