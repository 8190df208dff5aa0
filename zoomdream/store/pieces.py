"""A piece of a render (a cluster's chunk): the frames the output takes from it alone as H.264 segments, the
rest as lossless PNG.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from zoomdream import media
from zoomdream.errors import ZoomdreamError
from zoomdream.store.frames import FrameStore
from zoomdream.store.segments import MIN_STREAM, SegmentStore, closes


class PieceStore(SegmentStore):
    """A piece of a render (a cluster's chunk) in a work folder of its own: the frames the output takes from it
    alone (``stream``) as H.264 segments, which the join copies into the output without reading them, and the
    rest as numbered PNG frames in ``frames/``, lossless: the frames the join cross-faded with the pieces around
    it, and ``lossless`` too (the frames at the end of the stream that a resume after it starts from).

    Why not a PNG per frame: only the cross-faded frames are read again, and a big PNG is slow to compress. The
    segments close only at frames the next can start from, each of MIN_STREAM frames or more, the last at the
    stream's end; ``state.json`` counts a frame once it is durable (its PNG, or the segment holding it), so a
    resume continues exactly. A piece without a stream keeps every frame as PNG."""

    def __init__(self, work: Path, stream: range = range(0), lossless: range = range(0)):
        super().__init__(work, work / "frames")
        self.stream = stream if len(stream) >= MIN_STREAM else range(0)
        self.lossless = lossless

    def _closes(self, index: int, restartable: bool) -> bool:
        left = self.stream.stop - index - 1  # frames of the stream after this one: a segment's worth (the last
        return closes(self._start, index, restartable, self.length) and left >= MIN_STREAM  # closes at the end)

    def _encoded(self) -> int:
        """The end of the closed segments (the stream's start before any)."""
        return self.segments[-1][1] if self.segments else self.stream.start

    def keep(self, index: int, frame: np.ndarray, carry: dict, restartable: bool = True) -> None:
        self._check_held()
        if index not in self.stream or index in self.lossless:
            self._keep_png(index, frame)
        if index not in self.stream:
            self._write_state(index, carry)
        elif index >= self._encoded():  # frames a resume makes again after a closed segment are in it already
            super().keep(index, frame, carry, restartable)
            if index == self.stream.stop - 1:
                self.flush()  # the stream's last segment ends with it

    def _write_state(self, index: int, carry: dict, **more) -> None:
        super()._write_state(index, carry, **{"segments": self.segments, **more})

    def load(self, index: int) -> np.ndarray:
        path = media.frame_path(self.frames_dir, index)
        return media.read_image(path) if path.is_file() else super().load(index)

    def first(self) -> np.ndarray | None:
        return FrameStore.first(self)

    def _check_kept(self, state: dict, last: int) -> None:
        segments = state.get("segments")
        last_kept = any(path.is_file() for path in (media.frame_path(self.frames_dir, last), self._last(last),
                                                     self._open_frame(last)))
        if not isinstance(segments, list) or not last_kept or any(not self._segment(a).is_file() for a, _ in segments):
            raise ZoomdreamError(f"cannot resume {self.work}: its frames or segments are missing or do not match "
                                 f"state.json (delete {self.work} to start over)")

    def kept(self, start: int, stop: int):
        end = max(self.stream.start, min(stop, self._encoded()))
        for index in range(start, min(stop, self.stream.start)):
            yield index, self.load(index)
        yield from SegmentStore.kept(self, max(start, self.stream.start), end)
        for index in range(max(start, end), stop):
            yield index, self.load(index)
