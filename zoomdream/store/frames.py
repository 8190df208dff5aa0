"""The resume state of a render: ``state.json`` (settings hash, frame range, frames done, the carry after the
last) and the frames it counts, kept so a kill at any moment leaves a consistent folder.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoomdream import media
from zoomdream.errors import ZoomdreamError
from zoomdream.media.files import WriteFailed, atomic_write_bytes, remove_quietly
from zoomdream.store.lock import LOCK_NAME, _lock, _same_file

STATE_VERSION = 2


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
