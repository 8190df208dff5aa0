"""Decoding a video into uint8 HxWx3 RGB frames, one at a time through a pipe (flat memory)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import cv2
import numpy as np

from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import Ffmpeg, file_arg, fps_fraction, rate_arg
from zoomdream.media.files import PathArg, show
from zoomdream.media.probe import probe_video


def _fit_size(width: int, height: int, max_size: int | None) -> tuple[int, int] | None:
    """Target (w, h) with the longest side <= max_size, aspect kept, even dims; None when no resize is needed."""
    if max_size is None or max(width, height) <= max_size:
        return None
    scale = max_size / max(width, height)
    w = max(2, int(width * scale) // 2 * 2) if width >= height else max(2, round(width * scale / 2) * 2)
    h = max(2, int(height * scale) // 2 * 2) if height > width else max(2, round(height * scale / 2) * 2)
    return w, h


def _read_exact(stream, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = stream.readinto(view[got:])
        if not k:
            break
        got += k
    del view
    return buf[:got] if got < n else buf


class VideoReader:
    """Iterator over a video's frames that owns its ffmpeg: ffmpeg starts on the first next() and stops at
    the end, on an error, or at close() (which ``with`` calls), so stopping early never leaves it running."""

    def __init__(self, path: Path, args: list[str], width: int, height: int, every: int,
                 size: tuple[int, int] | None):
        self.path = path
        self._args = args
        self._shape = (height, width, 3)
        self._every = every
        self._size = size
        self._index = 0  # frames decoded so far, kept or skipped
        self._ff: Ffmpeg | None = None
        self._closed = False

    def __iter__(self) -> VideoReader:
        return self

    def __next__(self) -> np.ndarray:
        if self._closed:
            raise StopIteration
        try:
            frame = self._read()
        except BaseException:  # Ctrl-C too: ffmpeg must not outlive a reader that stopped; re-raised
            self.close()
            raise
        if frame is None:
            self.close()
            raise StopIteration
        return frame

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def __del__(self) -> None:
        # A reader dropped mid-video must not leave ffmpeg running.
        try:
            self.close()
        except Exception:
            pass  # interpreter shutdown: modules may already be gone

    def close(self) -> None:
        """Stop ffmpeg if it still runs; iteration ends here. A second call does nothing."""
        self._closed = True
        if self._ff is not None:
            self._ff.kill()

    def _read(self) -> np.ndarray | None:
        """The next kept frame, or None when ffmpeg finished cleanly."""
        if self._ff is None:
            self._ff = Ffmpeg(self._args, stdout=subprocess.PIPE)
        frame_bytes = math.prod(self._shape)
        while True:
            buf = _read_exact(self._ff.proc.stdout, frame_bytes)
            if len(buf) == 0:
                if self._ff.wait() != 0:
                    raise ZoomdreamError(
                        f"cannot read '{show(self.path)}': ffmpeg said: {self._ff.tail()} "
                        "(check that the video is intact)"
                    )
                return None
            if len(buf) < frame_bytes:
                self._ff.wait()
                raise ZoomdreamError(
                    f"cannot read '{show(self.path)}': the video ended inside a frame: {self._ff.tail()} "
                    "(re-encode the video)"
                )
            index, self._index = self._index, self._index + 1
            if index % self._every == 0:
                frame = np.frombuffer(buf, np.uint8).reshape(self._shape)
                if self._size is not None:
                    frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
                return frame


def read_video(
    path: PathArg,
    *,
    start: float = 0.0,
    duration: float | None = None,
    every: int = 1,
    max_size: int | None = None,
) -> VideoReader:
    """Stream uint8 HxWx3 RGB frames at the source's average rate (constant, so variable-rate clips behave).

    The file is checked now; ffmpeg starts on the first next() and stops when the frames run out or the
    reader is closed (use ``with read_video(...) as frames:`` when stopping early). With ``every=N`` the
    effective rate is ``probe_video(path).fps / N``.
    """
    if not (isinstance(start, (int, float)) and math.isfinite(start) and start >= 0):
        raise ZoomdreamError(f"start {start!r} must be a number of seconds >= 0 (e.g. 0 or 1.5)")
    if duration is not None and not (
        isinstance(duration, (int, float)) and math.isfinite(duration) and duration > 0
    ):
        raise ZoomdreamError(f"duration {duration!r} must be a number of seconds > 0 (or leave it out)")
    if not isinstance(every, int) or every < 1:
        raise ZoomdreamError(f"every {every!r} must be a whole number >= 1 (1 keeps every frame)")
    if max_size is not None and (not isinstance(max_size, int) or max_size < 2):
        raise ZoomdreamError(f"max_size {max_size!r} must be a whole number of pixels >= 2 (or leave it out)")
    info = probe_video(path)
    p = Path(path)
    if info.duration is not None and start >= info.duration:
        raise ZoomdreamError(
            f"cannot read '{show(p)}' from {start:g} s: it is only {info.duration:.2f} s long "
            "(use a smaller start)"
        )
    rate = rate_arg(fps_fraction(info.fps))
    args = ["-nostdin"]
    if start > 0:
        args += ["-ss", f"{start:.6f}"]  # before -i: fast keyframe seek, then exact decode to the time
    args += ["-i", file_arg(p), "-map", "0:V:0", "-an", "-sn", "-dn"]
    if duration is not None:
        args += ["-t", f"{duration:.6f}"]
    # start_time=0 keeps a frame for the first slot after a seek; the final scale pins the pipe's frame size
    # to what we slice by, whatever rotation or sample-aspect handling ffmpeg applies.
    args += ["-vf", f"fps={rate}:start_time=0,scale={info.width}:{info.height}",
             "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    return VideoReader(p, args, info.width, info.height, every, _fit_size(info.width, info.height, max_size))
