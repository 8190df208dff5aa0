"""Checks every loop kind makes the same way while resolving a job."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from zoomdream import media
from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError
from zoomdream.settings import MAX_SIDE, DreamSettings, check_frame_size, dream_settings, number


def constant(value, name: str) -> float:
    """A setting that only zoom may keyframe, read as one number for stills and video."""
    if isinstance(value, str):
        raise ZoomdreamError(f"--{name.replace('_', '-')} '{value}' must be a number here (keyframes are for zoom)")
    return value


def constant_dream(job: Job) -> DreamSettings:
    """The dream settings of a loop that does not keyframe them (still and video)."""
    return dream_settings(job.octaves, job.octave_scale, constant(job.steps, "steps"),
                          constant(job.step_size, "step_size"), job.max_loss)


def seed_and_max_size(job: Job) -> tuple[int, int | None]:
    seed = number(job.seed, "seed", low=0, high=2 ** 63 - 1, integer=True)
    max_size = None if job.max_size is None else number(job.max_size, "max_size", low=8, high=MAX_SIDE,
                                                         integer=True)
    return seed, max_size


def read_start(path: str, max_size: int | None) -> np.ndarray:
    """An input image, shrunk to ``max_size`` and checked against the frame-size limits."""
    img = media.fit_max_size(media.read_image(path), max_size)
    check_frame_size(img.shape[1], img.shape[0], f"input '{path}' is")
    return img


def last_dreamed(t: int, step: int, origin: int = 0) -> int:
    """With every ``step``th frame dreamed from ``origin`` on, the last dreamed frame before frame ``t``."""
    return origin + (t - 1 - origin) // step * step


class LoopSource:
    """What every frame source has unless it says otherwise (see ``runner.FrameSource``)."""

    fps: float = 0.0
    total: int | None = None
    needs_previous = False
    audio: dict = {}
    first: np.ndarray | None = None  # frame 0, set by whoever makes or loads it

    def carry(self) -> dict:
        return {}

    def restore(self, carry: dict) -> None:
        pass

    def restart_at(self, t: int) -> int:
        """Where to continue when frames before ``t`` exist: earlier, if frame ``t`` needs more than ``t - 1``."""
        return t

    def close(self) -> None:
        pass


class ClipFrames:
    """Frame k of a clip on demand: read forward, reopened to go back, the latest ``keep`` frames kept."""

    def __init__(self, open_reader: Callable[[], Iterator[np.ndarray]], keep: int = 2):
        self.open_reader, self.keep = open_reader, keep
        self.reader = None
        self.position = 0  # index of the next frame the reader yields
        self.frames: dict[int, np.ndarray] = {}

    def get(self, k: int) -> np.ndarray | None:
        """Frame k, or None past the clip's end."""
        if k in self.frames:
            return self.frames[k]
        if self.reader is None or k < self.position:
            self.close()
            self.reader, self.position, self.frames = self.open_reader(), 0, {}
        while self.position <= k:
            frame = next(self.reader, None)
            if frame is None:
                return None
            self.frames[self.position] = frame
            self.position += 1
        self.frames = {i: f for i, f in self.frames.items() if i > k - self.keep}
        return self.frames[k]

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
