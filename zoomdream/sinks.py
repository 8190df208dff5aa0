"""Where frames go. The runner hands every finished frame to each sink in turn; no loop knows about files.

- ``SegmentStore``: a whole render's resume state: H.264 segments (which become the output file by a stream
  copy at the end) and the last kept frame lossless, under an OS lock, so an interrupted render continues
  exactly and two renders never share a folder.
- ``FrameStore``: numbered PNG frames plus the resume state (a zoom's dreamed frames on a cluster).
- ``PieceStore``: a piece of a render (a cluster's chunk): H.264 segments of the frames the output takes from it
  alone, PNG frames of those its seams cross-fade, and the resume state.
- ``EncoderSink``: the streaming MP4/GIF encoder; the output file appears only when every frame is in.
- ``FramesDirSink``: every frame as a numbered PNG, for ``--frames-dir``.
- ``PreviewSink``: rewrites a preview PNG every N frames.
- ``MemorySink``: keeps frames in a list or hands them to a callback (tests, benchmarks, a UI).
- ``ImageSink``: the still image's output file.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from zoomdream import media
from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import fps_fraction
from zoomdream.media.files import WriteFailed, atomic_write_bytes, remove_quietly
from zoomdream.media.writer import H264Segment

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


LOCK_NAME = ".zoomdream.lock"


def _lock(folder: Path):
    """An exclusive OS lock on ``folder``, released by the OS on any exit, so a crash leaves no stale lock.

    The render holding a lock may delete its lock file (it takes its folder away when done), so a lock taken on
    a file that is no longer the one at that path protects nothing: then it is let go and taken again on the
    file there now (made afresh, with its folder, where they are gone)."""
    if fcntl is None:
        return None
    path = folder / LOCK_NAME
    for _ in range(20):
        media.make_folder(folder)
        try:
            handle = open(path, "a")
        except FileNotFoundError:  # its folder was taken away between the two lines
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            break
        if _same_file(handle, path):
            return handle
        handle.close()
    raise ZoomdreamError(f"another render is using '{folder}' (wait for it to finish, or give this one "
                         f"another output or --frames-dir)")


def busy(folder: Path) -> bool:
    """Whether a live render holds ``folder``'s lock (asked by taking it for a moment; nothing is created)."""
    if fcntl is None:
        return False
    try:
        handle = open(folder / LOCK_NAME, "rb")
    except OSError:  # no lock file: no render has held the folder, or the last one finished
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def _same_file(handle, path: Path) -> bool:
    """Whether the open ``handle`` is still the file at ``path`` (not deleted or replaced since it was opened)."""
    try:
        here, there = os.fstat(handle.fileno()), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


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

    Who owns what. A work folder (``OUT.zoomdream/``) and a frames folder belong to the render that holds their
    locks (``.zoomdream.lock`` in each, an OS lock): only it writes or deletes anything in them, and only while
    it holds both. A render that cannot take a lock changes nothing on disk. The holder owns what earlier
    renders of the same output left (a resumed render takes over their frames); when it completes it deletes
    the work folder and the frames folder's lock file, and keeps the frames of a user's ``--frames-dir``. A
    render that fails before its first frame is kept deletes only the folders it made itself (and only while
    empty); one that fails later keeps everything for ``--resume``. Temporary files are their writer's own
    (``.NAME.part-PID-THREAD.EXT`` beside the target, see ``media.files``) and never outlive a failed write.
    Holds nest: ``lock``/``open`` take them (the first call locks), ``release`` gives one back (the last one
    unlocks), so the runner can hold the folders from before the model loads until the work folder is gone.
    """

    def __init__(self, work: Path, frames_dir: Path | None = None):
        self.work = work
        self.frames_dir = frames_dir or work / "frames"
        self.state_path = work / "state.json"
        self.settings, self.span, self.done = "", range(0), 0
        self._folders = list(dict.fromkeys((self.frames_dir, self.work)))
        self._made: set[Path] = set()  # the folders this store created, which it may take away again
        self._handles: dict[Path, object] = {}  # folder -> its lock, held
        self._holds = 0
        self.frame_bytes = 0  # the size of the last frame kept, for the space a full disk needs

    def lock(self) -> None:
        """Create and lock the folders (taken before the model loads, so a second render fails at once). A
        second call nests: each ``lock`` or ``open`` is given back by one ``release``."""
        if self._holds == 0:
            self._made |= {folder for folder in self._folders if not folder.exists()}
            for folder in self._folders:
                if folder not in self._handles:
                    self._handles[folder] = _lock(folder)
        self._holds += 1

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
        """PNG first (atomic), then the state that says it exists; never into folders this store no longer
        holds (deleted, or made afresh by another render, since it locked them)."""
        self._check_held()
        self._keep_png(index, frame)
        self._write_state(index, carry)

    def _keep_png(self, index: int, frame: np.ndarray) -> None:
        path = media.frame_path(self.frames_dir, index)
        self.frame_bytes = frame.nbytes  # at most this much a frame, until one is kept
        media.write_image(path, frame)
        self.frame_bytes = os.path.getsize(path)

    def _write_state(self, index: int, carry: dict, **more) -> None:
        self.done = index - self.span.start + 1
        state = {"version": STATE_VERSION, "settings": self.settings, "span": [self.span.start, self.span.stop],
                 "done": self.done, "carry": carry, **more}
        atomic_write_bytes(self.state_path, json.dumps(state).encode())

    def _check_held(self) -> None:
        for folder in reversed(self._folders):  # the work folder first: it may hold the frames folder
            handle = self._handles.get(folder)
            if handle is not None and not _same_file(handle, folder / LOCK_NAME):
                raise ZoomdreamError(f"the folder '{folder}' was deleted while this render was writing into it "
                                     f"(the frames kept there are lost: run the command again, without --resume)")

    def fault(self, error: OSError | WriteFailed) -> ZoomdreamError:
        """The one line for a write the machine refused while this store held the render: a folder deleted
        under it, or a full disk (saying where and how much the frames left need) or a read-only one; the kept
        frames and state stay valid for ``--resume``. Any other error is returned as it is."""
        try:
            self._check_held()
        except ZoomdreamError as deleted:
            return deleted
        where = Path(error.filename).parent if error.filename else self.frames_dir
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return ZoomdreamError(f"the disk holding '{where}' is full: this render needs {self._room()} (free that "
                                  f"space, then run the same command with --resume)")
        if error.errno == errno.EROFS or isinstance(error, WriteFailed) and error.errno in (errno.EACCES,
                                                                                             errno.EPERM):
            return ZoomdreamError(f"cannot write into '{where}': it is read-only (make it writable, then run the "
                                  f"same command with --resume)")
        return error

    def _room(self) -> str:
        """The space the rest of the render needs, in words: measured on the segments kept (the output is a copy
        of them), else at most the frames' raw size."""
        left = self.span.stop - self.span.start - self.done if self.span.stop < 2 ** 62 else None
        kept = sum(path.stat().st_size for path in (self.work / "segments").glob("*.mp4"))
        if left == 0:  # every frame is kept: the output, made from them, did not fit (the join, the audio)
            return f"about {_size(kept)} for the video"
        if not kept or not self.done:
            return (f"up to {_size(self.frame_bytes * left)} for the {left} frames left, and room for the video"
                    if left is not None else f"up to {_size(self.frame_bytes)} a frame, and room for the video")
        each = kept / self.done
        if left is None:
            return f"about {_size(each)} a frame, and room for the video"
        return f"about {_size(each * left)} for the {left} frames left, and {_size(kept + each * left)} for the video"

    def release(self) -> None:
        """Give back one hold; the last one unlocks the folders."""
        self._holds = max(0, self._holds - 1)
        if self._holds == 0:
            self._unlock()

    def _unlock(self) -> None:
        for handle in self._handles.values():
            if handle is not None:
                handle.close()
        self._handles, self._holds = {}, 0

    def _holding(self, folder: Path) -> bool:
        return folder in self._handles

    def remove(self) -> None:
        """The render is complete: drop the work folder (frames in a user's --frames-dir stay), then unlock."""
        if self._holding(self.work) and self._holding(self.frames_dir):
            remove_quietly(self.frames_dir / LOCK_NAME)
            shutil.rmtree(self.work, ignore_errors=True)
        self._unlock()

    def release_unused(self) -> None:
        """Unlock. A render that kept no frame also takes away the folders it made itself, while it still holds
        them; another render's folders (such as those of a live render that refused this one) stay untouched."""
        if not self.state_path.exists():
            for folder in self._folders:  # the frames folder first: it may lie inside the work folder
                if folder in self._made and self._holding(folder):
                    remove_quietly(folder / LOCK_NAME)
                    try:
                        folder.rmdir()  # only if empty
                    except OSError:
                        pass
        self._unlock()


def _size(n: float) -> str:
    return f"{n / 2 ** 20:.1f} MB" if n >= 2 ** 20 else f"{max(1, round(n / 1024))} KB"


class SegmentStore(FrameStore):
    """A whole render's resume state: H.264 segments of about ``SEGMENT_FRAMES`` frames in ``segments/``, the
    last kept frame lossless (``last-NNNNNNNN.png``), frame 0 lossless (``first.png``, which loops that close on
    themselves and the zoom's colour reference need) and ``state.json``.

    Why not a PNG per frame: a 1080p dream is a 5 MB PNG that takes 0.2 s to compress, four times a GPU's
    dream, and 3 minutes of it fill 21 GB; a segment costs a pipe write per frame (ffmpeg encodes in its own
    process) and becomes part of the output by a stream copy, so nothing is encoded twice.

    What is durable: a frame counts as kept once the segment holding it is closed (ffmpeg finished, its MP4
    renamed into ``segments/``), the segment's last frame is written losslessly and ``state.json`` counts it,
    in that order (a kill between the steps leaves the older state, whose files are all still there). A segment
    closes only after a frame the next one can start from (``restartable``: not between a zoom's in-between
    frames and the dreamed frame after them), and never leaves fewer than MIN_STREAM frames for the last one.

    Segments are cut at the same frames however a render is interrupted, so a resumed output is the same file.
    A graceful stop (Ctrl-C, SIGTERM, Stop, an error) keeps the open segment's frames losslessly in ``open/``
    (they are held in memory until their segment closes: at most ``length`` frames) and a resume encodes them
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


MIN_STREAM = 3  # x264 times its B-frame delay from a stream's first 3 frames: a shorter one would not join


class PieceStore(SegmentStore):
    """A piece of a render (a cluster's chunk) in a work folder of its own: the frames the output takes from it
    alone (``stream``) as H.264 segments, which the join copies into the output without reading them, and the
    rest as numbered PNG frames in ``frames/``, lossless: the frames the join cross-faded with the pieces around
    it, and ``lossless`` too (the frames at the end of the stream that a resume after it starts from).

    Why not a PNG per frame: only the cross-faded frames are read again, and a PNG costs 0.2 s a 1080p frame. The
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
