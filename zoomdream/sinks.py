"""Where frames go. The runner hands every finished frame to each sink in turn; no loop knows about files.

- ``EncoderSink``: the streaming MP4/GIF encoder; the output file appears only when every frame is in.
- ``FramesDirSink``: every frame as a numbered PNG, for ``--frames-dir``.
- ``PreviewSink``: rewrites a preview PNG every N frames.
- ``MemorySink``: keeps frames in a list or hands them to a callback (tests, benchmarks, a UI).
- ``ImageSink``: the still image's output file.

A sink is a context manager: ``with`` closes it when the block ends and aborts it when the block raises.
The resume stores, which keep frames for ``--resume``, are in ``zoomdream.store``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from zoomdream import media
from zoomdream.media.files import ClosesOrAborts


class Sink(ClosesOrAborts):
    """Gets each finished frame in order; ``close()`` once all are in, ``abort()`` when the render fails (both
    do nothing unless a sink has something to finish or undo). ``before_store``: the runner hands it each frame
    before the resume store keeps it (a lossless copy that a resume must never replace with a lossy one)."""

    before_store = False

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
    frames replayed from the store's segments are lossy copies of the PNGs an earlier run wrote. Written before
    the store keeps the frame, so a kill between the two cannot leave a frame to that lossy replay (a cluster
    test saw frame 3 of a chunk up to 47 levels off after a worker was killed just after its segment closed)."""

    before_store = True

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
