"""Checks every loop kind makes the same way while resolving a job."""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np

from zoomdream import media
from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError
from zoomdream.settings import MAX_SIDE, MAX_STEPS, DreamSettings, check_frame_size, dream_settings, number


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
    check_frame_size(img.shape[1], img.shape[0], f"input '{path}': image size")
    return img


def dream_cost(width: float, height: float, frames: int | None, every: int, steps: Callable[[int], float]) -> float:
    """A render's rough cost, its loop settings' ``cost()``, so a cluster hands out the longest job first:
    width x height x ascent steps (at least 1) at each frame it dreams (every ``every``th; a clip of unknown
    length counts as one frame)."""
    return width * height * sum(max(1.0, steps(t)) for t in range(0, frames or 1, every))


def check_clip(info: media.VideoInfo, path: str) -> None:
    """A still picture where a clip is read is refused: ffmpeg opens it as a clip of one frame, so it would
    quietly become a one-frame video."""
    if info.still:
        raise ZoomdreamError(f"'{path}' is a still image, not a video (dream it with `zoomdream image {path} -o "
                             f"OUT.png`, or zoom into it with `zoomdream zoom {path} -o OUT.mp4`)")


def last_dreamed(t: int, step: int, origin: int = 0) -> int:
    """With every ``step``th frame dreamed from ``origin`` on, the last dreamed frame before frame ``t``."""
    return origin + (t - 1 - origin) // step * step


def check_dream_schedules(steps, step_size, t: int) -> None:
    """Frame t's steps and step size, from their schedules, within range: one line naming the frame if not."""
    number(steps.at(t), "steps", low=0, high=MAX_STEPS, frame=t)
    number(step_size.at(t), "step_size", low=0, high=10, frame=t)


class DreamsEveryNth:
    """A source that dreams every ``step``th frame from ``origin`` and makes the frames between from the two
    dreamed frames around them."""

    step: int = 1
    origin: int = 0

    def restart_at(self, t: int) -> int:
        """An in-between frame needs the dreamed frames on both sides: resume after the last dreamed one."""
        return last_dreamed(t, self.step, self.origin) + 1


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


def flow_workers(job: Job) -> int:
    """Threads for source-only work ahead of the dream: the cores the dream leaves free (one for the render's
    own thread and the encoder's), at most 8; 0 does it in line."""
    if job.flow_workers is not None:
        return number(job.flow_workers, "flow_workers", low=0, high=64, integer=True)
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def flow_size(job: Job) -> int | None:
    """The longest side the optical flow is estimated at (None: the frames' own size)."""
    size = number(job.flow_size, "flow_size", low=0, high=MAX_SIDE, integer=True)
    if 0 < size < 16:
        raise ZoomdreamError(f"--flow-size {size} is too small to estimate flow at (give 0 for the frames' own "
                             f"size, or at least 16)")
    return size or None


class Ahead:
    """Work that depends only on the source, for k = 0, 1, 2, ... (a frame, or a pair), done ahead on worker
    threads: ``work(*inputs(k))`` for up to ``depth`` frames past the one asked for, results in order.

    Threads, not processes: OpenCV's flow and warps and numpy's array loops release the GIL, so threads run
    them in parallel without copying frames between processes, and a spawned process would first import
    the whole program (TensorFlow included, seconds of start-up). ``inputs(k)`` runs on the render's thread (it reads
    frames) and returns ``work``'s arguments, or None past the clip's end. With no workers, ``get`` just
    calls ``work``. Results equal the in-line ones exactly: the same function on the same frames."""

    def __init__(self, work: Callable, inputs: Callable[[int], tuple | None], workers: int, depth: int = 0):
        self.work, self.inputs = work, inputs
        self.depth = depth or 2 * workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="zoomdream-ahead") if workers > 0 else None
        self.pending: dict[int, Future] = {}
        self.next = 0  # the next frame to hand to a worker

    def get(self, k: int):
        """``work``'s result for frame k (None past the end)."""
        if self.pool is None:
            args = self.inputs(k)
            return None if args is None else self.work(*args)
        if k not in self.pending and k != self.next:  # a jump (a resume, a restart): start over from k
            self.restart()
            self.next = k
        while self.next <= k + self.depth:
            args = self.inputs(self.next)
            if args is None:
                break
            self.pending[self.next] = self.pool.submit(self.work, *args)
            self.next += 1
        future = self.pending.pop(k, None)
        return None if future is None else future.result()

    def restart(self) -> None:
        """Forget the work done ahead: what ``inputs`` returns has changed (the video restarted its dream)."""
        for future in self.pending.values():
            future.cancel()
        self.pending = {}

    def close(self) -> None:
        if self.pool is not None:
            self.restart()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
