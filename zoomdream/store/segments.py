"""A whole render's frames as H.264 segments that become the output by a stream copy, cut at the same frames
however the render is interrupted.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from zoomdream import media
from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import fps_fraction
from zoomdream.media.files import remove_quietly
from zoomdream.media.writer import H264Segment
from zoomdream.store.frames import FrameStore, Resume, read_state

SEGMENT_FRAMES = 24  # frames per H.264 segment: a kill re-dreams at most this many, and a keyframe each


MIN_STREAM = 3  # x264 times its B-frame delay from a stream's first 3 frames: a shorter one would not join


class SegmentStore(FrameStore):
    """A whole render's resume state: H.264 segments of about ``SEGMENT_FRAMES`` frames in ``segments/``, the
    last kept frame lossless (``last-NNNNNNNN.png``), frame 0 lossless (``first.png``, which loops that close on
    themselves and the zoom's colour reference need) and ``state.json``.

    Why not a PNG per frame: a 1080p dream's PNG takes longer to compress than a GPU takes to dream it, and a
    few minutes of them fill tens of GB (figures: the Benchmarks page); a segment costs a pipe write per frame
    (ffmpeg encodes in its own process) and becomes part of the output by a stream copy, so nothing is encoded
    twice.

    What is durable: a frame counts as kept once the segment holding it is closed (ffmpeg finished, its MP4
    renamed into ``segments/``), the segment's last frame is written losslessly and ``state.json`` counts it,
    in that order (a kill between the steps leaves the older state, whose files are all still there). A segment
    closes only after a frame the next one can start from (``restartable``: not between a zoom's in-between
    frames and the dreamed frame after them), and never leaves fewer than MIN_STREAM frames for the last one.

    Segments are cut at the same frames however a render is interrupted, so a resumed output is the same file.
    A graceful stop (Ctrl-C, SIGTERM, Stop, an error) keeps the open segment's frames losslessly in ``open/``
    (they are held in memory until their segment closes: at most ``length + MIN_STREAM - 1`` frames) and a resume encodes them
    again into the same segment before going on; a kill -9 loses them and a resume dreams them again.
    """

    def __init__(self, work: Path, frames_dir: Path | None = None, *, fps: float = 24.0, crf: int = 18,
                 length: int = SEGMENT_FRAMES):
        super().__init__(work, frames_dir or work)  # --frames-dir is locked here, written by FramesDirSink
        self.segments_dir = work / "segments"
        self.fps, self.crf, self.length = fps, crf, length
        self.segments: list[list[int]] = []  # [first, end) of each closed segment
        self._writer = None
        self._start = 0
        self._open: list[tuple[int, np.ndarray, dict, bool]] = []  # (index, frame, carry, restartable) given
        # to the open segment: what a graceful stop keeps losslessly
        self._held: list[tuple[int, np.ndarray, dict, bool]] | None = None  # frames after a point where the
        # open segment may close, held until MIN_STREAM of them show that a long enough segment follows

    def _segment(self, start: int) -> Path:
        return segment_path(self.work, start)

    def _last(self, index: int) -> Path:
        return self.work / f"last-{index:08d}.png"

    def _open_frame(self, index: int) -> Path:
        return self.work / "open" / f"{index:08d}.png"

    def open(self, settings: str, span: range, resume: bool) -> Resume | None:
        resumed = super().open(settings, span, resume)  # locks the folder first
        for temp in self.segments_dir.glob(".*"):  # a segment a killed render left half-written
            remove_quietly(temp)
        state = read_state(self.work) if resumed else {}
        self.segments = state.get("segments", [])
        if state.get("open"):  # frames a graceful stop kept: encoded again into the segment they began, which
            kept = state["open"]  # closes no earlier than when they were first given (fewer than MIN_STREAM held)
            for index, restartable in enumerate(kept["restartable"], kept["first"]):
                carry = state["carry"] if index == kept["end"] - 1 else {}
                self._take(index, media.read_image(self._open_frame(index)), carry, restartable)
        return resumed

    def _check_kept(self, state: dict, last: int) -> None:
        segments, kept = state.get("segments"), state.get("open")
        ends = [end for _, end in segments] if isinstance(segments, list) else []
        missing = [self._segment(a) for a, _ in segments or [] if not self._segment(a).is_file()]
        if kept is not None:
            valid = (isinstance(kept, dict) and kept.get("first") == (ends[-1] if ends else 0)
                     and kept.get("end") == last + 1 and isinstance(kept.get("restartable"), list)
                     and len(kept["restartable"]) == last + 1 - kept["first"])
            missing += [Path("open")] if not valid else [self._open_frame(i) for i in range(kept["first"], last + 1)
                                                         if not self._open_frame(i).is_file()]
        elif not ends or ends[-1] != last + 1 or not self._last(last).is_file():
            missing.append(self._last(last))
        if missing:
            raise ZoomdreamError(f"cannot resume {self.work}: its segments or last frame are missing or do not "
                                 f"match state.json (delete {self.work} to start over)")

    def load(self, index: int) -> np.ndarray:
        path = self._open_frame(index)
        return media.read_image(path if path.is_file() else self._last(index))

    def first(self) -> np.ndarray | None:
        path = self.work / "first.png"
        return media.read_image(path) if path.is_file() else None

    def kept(self, start: int, stop: int):
        for first, end in self.segments:
            if end > start and first < stop:
                for index, frame in enumerate(media.read_video(self._segment(first)), first):
                    if start <= index < stop:
                        yield index, frame
        for index, frame, _, _ in [*self._open, *(self._held or [])]:  # frames a graceful stop kept
            if start <= index < stop:
                yield index, frame

    def keep(self, index: int, frame: np.ndarray, carry: dict, restartable: bool = True) -> None:
        self._check_held()
        if not self.segments:
            self.frame_bytes = frame.nbytes  # at most this much a frame, until a segment is closed
        if index == 0:
            self.keep_first(frame)
        self._take(index, frame, carry, restartable)

    def _take(self, index: int, frame: np.ndarray, carry: dict, restartable: bool) -> None:
        """Give a frame to the open segment, or hold it after a point where that segment may close: it closes
        there once MIN_STREAM frames follow, else (the render ended) it takes them in. So the last segment is
        never too short to join, whether or not the frame count was known ahead (a clip's is an estimate)."""
        if self._held is not None:
            self._held.append((index, frame, carry, restartable))
            if len(self._held) >= MIN_STREAM:
                held, self._held = self._held, None
                self._close()
                for item in held:
                    self._take(*item)
            return
        self._feed(index, frame, carry, restartable)
        if self._closes(index, restartable):
            self._held = []

    def _feed(self, index: int, frame: np.ndarray, carry: dict, restartable: bool) -> None:
        """Give a frame to the open segment (opened at this frame if none is)."""
        if self._writer is None:
            media.make_folder(self.segments_dir)
            self._start = index
            self._writer = H264Segment(self._segment(index), fps_fraction(self.fps), crf=self.crf)
        self._writer.write(frame)
        self._open.append((index, frame, carry, restartable))

    def _closes(self, index: int, restartable: bool) -> bool:
        return closes(self._start, index, restartable, self.length)

    def flush(self) -> None:
        """The render's last frame is in: close the open segment with any frames held after it."""
        held, self._held = self._held or [], None
        for item in held:
            self._feed(*item)
        self._close()

    def _close(self) -> None:
        """Close the open segment: the MP4, then the last frame lossless, then the state that counts them."""
        if self._writer is None:
            return
        index, frame, carry, _ = self._open[-1]
        writer, self._writer = self._writer, None
        writer.close()
        if writer.aborted:  # dropped after an encoder error: its frames are dreamed again on resume
            raise ZoomdreamError(f"cannot write '{writer.path}': its encoder failed (run the same command with "
                                 f"--resume)")
        self.segments.append([self._start, index + 1])
        self.frame_bytes = self._segment(self._start).stat().st_size // (index + 1 - self._start)
        media.write_image(self._last(index), frame)
        self._write_state(index, carry, segments=self.segments)
        self._open = []
        for old in [*self.work.glob("last-*.png"), *self.work.glob("open/*.png")]:
            if old != self._last(index):
                remove_quietly(old)

    def abort(self) -> None:
        """The render stopped (Ctrl-C, Stop, an error): the open segment is dropped, and its frames up to the
        last one the next frame can start from are kept losslessly in ``open/``, so a resume encodes them again
        into the same segment and the output is the file an uninterrupted render makes."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        writer.abort()
        given, self._open, self._held = [*self._open, *(self._held or [])], [], None
        ends = [k for k, (_, _, _, restartable) in enumerate(given) if restartable]
        kept = given[:ends[-1] + 1] if ends else []
        if not kept or kept[-1][0] + 1 - self.span.start <= self.done:
            return  # nothing new (a resume that stopped before passing what it was given)
        try:
            self._check_held()  # never into a folder deleted, or made afresh by another render, since
            media.make_folder(self._open_frame(0).parent)
            for index, frame, _, _ in kept:
                if not self._open_frame(index).is_file():  # else kept by an earlier stop, the same frame
                    media.write_image(self._open_frame(index), frame)
            index, _, carry, _ = kept[-1]
            self._write_state(index, carry, segments=self.segments,
                              open={"first": kept[0][0], "end": index + 1, "restartable": [k[3] for k in kept]})
        except (OSError, ZoomdreamError):
            pass  # a full or vanished disk: the state before still stands, and a resume dreams them again

    def write_output(self, writer) -> None:
        """Make the output file from the segments (``media.VideoWriter.write_segments``)."""
        writer.write_segments([(self._segment(first), end - first) for first, end in self.segments])


def segment_path(work: Path, start: int) -> Path:
    """Where a store keeps the segment that starts at frame ``start``."""
    return Path(work) / "segments" / f"{start:08d}.mp4"


def closes(start: int, index: int, restartable: bool, length: int = SEGMENT_FRAMES, stop: int = 2 ** 62) -> bool:
    """Whether a segment from frame ``start`` closes after frame ``index`` of a render ending before ``stop``:
    once it holds ``length`` frames, at the first frame the next one can start from (``restartable``), unless
    that would leave fewer than MIN_STREAM frames for the last segment. x264 gives a stream of 3 frames or more
    the same B-frame delay; a shorter one joined to them would shift the timestamps at the join (a 25-frame
    file of 24 + 1 frames at 25 fps lasted 1.08 s and read back as 23 frames)."""
    left = stop - index - 1
    return restartable and index + 1 - start >= length and (left == 0 or left >= MIN_STREAM)


def segment_spans(restartable: list[bool], length: int = SEGMENT_FRAMES) -> list[range]:
    """The segments a whole render of ``len(restartable)`` frames encodes (``SegmentStore``): frames made apart
    into the same segments make the same file."""
    spans, start = [], 0
    for index, ok in enumerate(restartable):
        if closes(start, index, ok, length, len(restartable)) or index == len(restartable) - 1:
            spans.append(range(start, index + 1))
            start = index + 1
    return spans
