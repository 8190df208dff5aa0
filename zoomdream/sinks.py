"""Where frames go. The runner hands every finished frame to each sink in turn; no loop knows about files.

- ``SegmentStore``: a whole render's resume state: H.264 segments (which become the output file by a stream
  copy at the end) and the last kept frame lossless, under an OS lock, so an interrupted render continues
  exactly and two renders never share a folder.
- ``FrameStore``: numbered PNG frames plus the resume state, for a piece of a render (a cluster's chunk).
- ``EncoderSink``: the streaming MP4/GIF encoder; the output file appears only when every frame is in.
- ``FramesDirSink``: every frame as a numbered PNG, for ``--frames-dir``.
- ``PreviewSink``: rewrites a preview PNG every N frames.
- ``MemorySink``: keeps frames in a list or hands them to a callback (tests, benchmarks, a UI).
- ``ImageSink``: the still image's output file.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from zoomdream import media
from zoomdream.errors import ZoomdreamError
from zoomdream.media.files import atomic_write_bytes, remove_quietly

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; renders there are not guarded against each other
    fcntl = None

STATE_VERSION = 2
SEGMENT_FRAMES = 24  # frames per H.264 segment: a kill re-dreams at most this many, and a keyframe each


class Sink:
    """Gets each finished frame in order; ``close()`` once all are in, ``abort()`` when the render fails (both
    do nothing unless a sink has something to finish or undo)."""

    def write(self, index: int, frame: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


@dataclass
class MemorySink(Sink):
    """Frames in memory, by index; or, with ``on_frame``, handed over as they come and not kept."""

    on_frame: Callable[[int, np.ndarray], None] | None = None
    frames: dict[int, np.ndarray] = field(default_factory=dict)

    def write(self, index: int, frame: np.ndarray) -> None:
        if self.on_frame is None:
            self.frames[index] = frame
        else:
            self.on_frame(index, frame)


class ImageSink(Sink):
    """One still image, written atomically when the frame arrives."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, index: int, frame: np.ndarray) -> None:
        media.write_image(self.path, frame)


class PreviewSink(Sink):
    """``OUT.preview.png`` rewritten with the latest frame every ``every`` frames."""

    def __init__(self, path: Path, every: int):
        self.path, self.every = path, every

    def write(self, index: int, frame: np.ndarray) -> None:
        if (index + 1) % self.every == 0:
            media.write_image(self.path, frame)


class FramesDirSink(Sink):
    """``--frames-dir``: every frame as a numbered PNG. A frame already there is left as it is: on resume the
    frames replayed from the store's segments are lossy copies of the PNGs an earlier run wrote."""

    def __init__(self, folder: Path):
        self.folder = folder

    def write(self, index: int, frame: np.ndarray) -> None:
        path = media.frame_path(self.folder, index)
        if not path.is_file():
            media.write_image(path, frame)


class EncoderSink(Sink):
    """The final video file, streamed through ffmpeg; opened lazily so a bad setting fails before work."""

    def __init__(self, path: Path, fps: float, **options):
        self.writer = media.VideoWriter(path, fps, **options)

    def write(self, index: int, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


def _lock(folder: Path):
    """An exclusive OS lock on ``folder``, released by the OS on any exit, so a crash leaves no stale lock."""
    if fcntl is None:
        return None
    handle = open(folder / ".zoomdream.lock", "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ZoomdreamError(f"another render is using '{folder}' (wait for it to finish, or give this one "
                             f"another output or --frames-dir)") from None
    return handle


@dataclass(frozen=True)
class Resume:
    """What frame ``next`` needs from the frames before it: the last frame and the state carried after it."""

    next: int
    previous: np.ndarray | None
    carry: dict | None
    first: np.ndarray | None = None  # frame 0, which loops that close on themselves need


class FrameStore:
    """Numbered PNG frames of the span ``[first, end)`` and ``state.json`` in a work folder.

    The state holds the settings hash, the span, how many frames are done and the carry after the last one (the
    RNG state and whatever the frame source needs, such as the zoom's colour reference). A frame's PNG is written
    (atomically) before the state that counts it, so a kill at any moment leaves a consistent folder.
    """

    def __init__(self, work: Path, frames_dir: Path | None = None):
        self.work = work
        self.frames_dir = frames_dir or work / "frames"
        self.state_path = work / "state.json"
        self.settings, self.span, self.done = "", range(0), 0
        self._locks = []

    def lock(self) -> None:
        """Create and lock the folders (taken before the model loads, so a second render fails at once)."""
        if not self._locks:
            for folder in dict.fromkeys((self.frames_dir, self.work)):
                media.make_folder(folder)
                self._locks.append(_lock(folder))

    def open(self, settings: str, span: range, resume: bool) -> Resume | None:
        """Lock the folders; returns where an interrupted render of ``span`` under ``settings`` (a hash) left
        off (None: start afresh)."""
        self.settings, self.span = settings, span
        self.lock()
        if not self.state_path.exists():
            return None
        if not resume:
            raise ZoomdreamError(f"an interrupted render exists in {self.work} (add --resume to continue it, "
                                 f"or delete that folder to start over)")
        state = read_state(self.work)
        if state["settings"] != self.settings or state["span"] != [self.span.start, self.span.stop]:
            raise ZoomdreamError(f"cannot resume {self.work}: its settings or input differ from these (use the "
                                 f"settings in {self.work / 'job.toml'}, or delete the folder to start over)")
        self.done = state["done"]
        if self.done == 0:
            return None
        last = self.span.start + self.done - 1
        self._check_kept(state, last)
        return Resume(last + 1, self.load(last), state["carry"], self.first())

    def _check_kept(self, state: dict, last: int) -> None:
        for t in (self.span.start, last):
            if not media.frame_path(self.frames_dir, t).is_file():
                raise ZoomdreamError(f"cannot resume {self.work}: frame {t} is missing from {self.frames_dir} "
                                     f"(delete {self.work} to start over)")

    def kept(self, start: int, stop: int):
        """The kept frames ``[start, stop)`` in order, as (index, frame): what a resumed render replays."""
        for index in range(start, stop):
            yield index, self.load(index)

    def flush(self) -> None:
        """Make every frame given so far durable (the render's last frame is in)."""

    def abort(self) -> None:
        """The render stopped (Ctrl-C, Stop, an error): keep what can be kept (here every frame already is)."""

    def load(self, index: int) -> np.ndarray:
        return media.read_image(media.frame_path(self.frames_dir, index))

    def first(self) -> np.ndarray | None:
        """Frame 0: from this store's frames, or the copy a piece that starts later keeps (None: not made)."""
        for path in (media.frame_path(self.frames_dir, 0), self.work / "first.png"):
            if path.is_file():
                return media.read_image(path)
        return None

    def keep_first(self, frame: np.ndarray) -> None:
        media.write_image(self.work / "first.png", frame)

    def keep(self, index: int, frame: np.ndarray, carry: dict, restartable: bool = True) -> None:
        """PNG first (atomic), then the state that says it exists."""
        media.write_image(media.frame_path(self.frames_dir, index), frame)
        self._write_state(index, carry)

    def _write_state(self, index: int, carry: dict, **more) -> None:
        self.done = index - self.span.start + 1
        state = {"version": STATE_VERSION, "settings": self.settings, "span": [self.span.start, self.span.stop],
                 "done": self.done, "carry": carry, **more}
        atomic_write_bytes(self.state_path, json.dumps(state).encode())

    def release(self) -> None:
        for handle in self._locks:
            if handle is not None:
                handle.close()
        self._locks = []

    def remove(self) -> None:
        """The render is complete: drop the work folder (frames in a user's --frames-dir stay)."""
        remove_quietly(self.frames_dir / ".zoomdream.lock")
        shutil.rmtree(self.work, ignore_errors=True)
        self.release()

    def release_unused(self) -> None:
        """Unlock, and take away the folders made for a render that failed before its first frame."""
        if not self.state_path.exists():
            for folder in dict.fromkeys((self.work, self.frames_dir)):
                remove_quietly(folder / ".zoomdream.lock")
            for folder in dict.fromkeys((self.frames_dir, self.work)):
                try:
                    folder.rmdir()  # only if empty: a user's frames stay
                except OSError:
                    pass
        self.release()


class SegmentStore(FrameStore):
    """A whole render's resume state: H.264 segments of about ``SEGMENT_FRAMES`` frames in ``segments/``, the
    last kept frame lossless (``last-NNNNNNNN.png``), frame 0 lossless (``first.png``, which loops that close on
    themselves and the zoom's colour reference need) and ``state.json``.

    Why not a PNG per frame: a 1080p dream is a 5 MB PNG that takes 0.2 s to compress, four times a GPU's
    dream, and 3 minutes of it fill 21 GB; a segment costs a pipe write per frame (ffmpeg encodes in its own
    process) and becomes part of the output by a stream copy, so nothing is encoded twice.

    What is durable: a frame counts as kept once the segment holding it is closed (ffmpeg finished, its MP4
    renamed into ``segments/``), the segment's last frame is written losslessly and ``state.json`` counts it,
    in that order (a kill between the steps leaves the older state, whose files are all still there). Frames
    of a segment still open are dreamed again on resume, from the last kept frame and the carry saved with it,
    so the result equals an uninterrupted render. A segment closes only after a frame the next one can start
    from (``restartable``: not between a zoom's in-between frames and the dreamed frame after them).
    """

    def __init__(self, work: Path, frames_dir: Path | None = None, *, fps: float = 24.0, crf: int = 18,
                 length: int = SEGMENT_FRAMES):
        super().__init__(work, frames_dir or work)  # --frames-dir is locked here, written by FramesDirSink
        self.segments_dir = work / "segments"
        self.fps, self.crf, self.length = fps, crf, length
        self.segments: list[list[int]] = []  # [first, end) of each closed segment
        self._writer = None
        self._start = 0
        self._pending = None  # (index, frame, carry) of the last frame given
        self._restartable = False  # whether the next frame can start from that one

    def _segment(self, start: int) -> Path:
        return self.segments_dir / f"{start:08d}.mp4"

    def _last(self, index: int) -> Path:
        return self.work / f"last-{index:08d}.png"

    def open(self, settings: str, span: range, resume: bool) -> Resume | None:
        resumed = super().open(settings, span, resume)  # locks the folder first
        for temp in self.segments_dir.glob(".*"):  # a segment a killed render left half-written
            remove_quietly(temp)
        self.segments = read_state(self.work)["segments"] if resumed else []
        return resumed

    def _check_kept(self, state: dict, last: int) -> None:
        segments = state.get("segments")
        ends = [end for _, end in segments] if isinstance(segments, list) else []
        missing = [self._segment(a) for a, _ in segments or [] if not self._segment(a).is_file()]
        if not ends or ends[-1] != last + 1 or missing or not self._last(last).is_file():
            raise ZoomdreamError(f"cannot resume {self.work}: its segments or last frame are missing or do not "
                                 f"match state.json (delete {self.work} to start over)")

    def load(self, index: int) -> np.ndarray:
        return media.read_image(self._last(index))

    def first(self) -> np.ndarray | None:
        path = self.work / "first.png"
        return media.read_image(path) if path.is_file() else None

    def kept(self, start: int, stop: int):
        for first, end in self.segments:
            if end > start and first < stop:
                for index, frame in enumerate(media.read_video(self._segment(first)), first):
                    if start <= index < stop:
                        yield index, frame

    def keep(self, index: int, frame: np.ndarray, carry: dict, restartable: bool = True) -> None:
        from zoomdream.media.ffmpeg import fps_fraction
        from zoomdream.media.writer import H264Segment

        if self._writer is None:
            media.make_folder(self.segments_dir)
            self._start = index
            self._writer = H264Segment(self._segment(index), fps_fraction(self.fps), crf=self.crf)
        self._writer.write(frame)
        if index == 0:
            self.keep_first(frame)
        self._pending = (index, frame, carry)
        self._restartable = restartable
        if restartable and index + 1 - self._start >= self.length:
            self.flush()

    def flush(self) -> None:
        """Close the open segment: the MP4, then the last frame lossless, then the state that counts them."""
        if self._writer is None:
            return
        index, frame, carry = self._pending
        self._writer.close()
        self._writer = None
        self.segments.append([self._start, index + 1])
        media.write_image(self._last(index), frame)
        self._write_state(index, carry, segments=self.segments)
        for old in self.work.glob("last-*.png"):
            if old != self._last(index):
                remove_quietly(old)

    def abort(self) -> None:
        """The render stopped (Ctrl-C, Stop, an error): close the open segment, so every frame made so far is
        kept, where the next frame can start from its last; else, or if the encoder itself failed, drop it
        (its frames are dreamed again on resume)."""
        if self._writer is None:
            return
        try:
            if self._restartable:
                self.flush()
                return
        except (ZoomdreamError, OSError):
            pass
        if self._writer is not None:
            self._writer.abort()
            self._writer = None

    def write_output(self, writer) -> None:
        """Make the output file from the segments (``media.VideoWriter.write_segments``)."""
        writer.write_segments([self._segment(first) for first, _ in self.segments], self.done)


def read_state(work: Path) -> dict:
    """A work folder's state.json, checked: any damage is one line, never a traceback or a wrong resume."""
    damaged = f"cannot resume {work}: its state.json is damaged (delete the folder to start over)"
    try:
        state = json.loads((work / "state.json").read_text())
    except FileNotFoundError:
        raise ZoomdreamError(f"'{work}' holds no render (check the path)") from None
    except (OSError, ValueError):
        raise ZoomdreamError(damaged) from None
    span = state.get("span") if isinstance(state, dict) else None
    ok = (isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span)
          and 0 <= span[0] <= span[1] and isinstance(state.get("settings"), str)
          and type(state.get("done")) is int and 0 <= state["done"] <= span[1] - span[0]
          and isinstance(state.get("carry"), dict))
    if not ok:
        raise ZoomdreamError(damaged)
    return state
