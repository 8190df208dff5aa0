"""Interpolate a finished clip: F - 1 frames between each pair of its frames, along the optical flow between
them, so the frame rate is multiplied by F and the audio stays in step.

Output frame ``F*k`` is input frame ``k``; frame ``F*k + j`` shows time ``k + j/F``. The last input frame is
held for its F slots, so the output lasts exactly as long as the input (``F*n`` frames for ``n``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoomdream import media
from zoomdream.config import Job
from zoomdream.errors import ZoomdreamError
from zoomdream.interpolation import between_frames, blend, pair_flows
from zoomdream.loops.common import Ahead, ClipFrames, LoopSource, check_clip, dream_cost, flow_size, flow_workers
from zoomdream.settings import check_frame_size, number

OUTPUTS = media.VIDEO_EXTENSIONS
NEEDS_MODEL = False


@dataclass(frozen=True)
class InterpolateSettings:
    input: Path
    info: media.VideoInfo
    factor: int
    flow: str
    flow_size: int | None = None  # the longest side flow is estimated at (None: the frames' own)
    workers: int = 0  # threads making frames ahead (0: in line)

    def cost(self) -> float:
        """Nothing is dreamed: each input frame counts as one step."""
        return dream_cost(self.info.width, self.info.height, self.info.n_frames, 1, lambda t: 1)


def resolve(job: Job) -> InterpolateSettings:
    if not job.input:
        raise ZoomdreamError("no input video given (zoomdream interpolate IN.mp4 -o OUT.mp4 --factor 2)")
    info = media.probe_video(job.input)
    check_clip(info, job.input)
    check_frame_size(info.width, info.height, f"video '{job.input}': frame size")
    factor = number(job.factor, "factor", low=1, high=16, integer=True)
    number(info.fps * factor, "factor", high=1000)
    return InterpolateSettings(Path(job.input), info, factor, job.flow, flow_size(job), flow_workers(job))


class Source(LoopSource):
    """Every frame depends on the input alone, so whole frames are made ahead on worker threads: the F - 1
    in-betweens of each input pair in one piece of work (they share the pair's flows)."""

    def __init__(self, settings: InterpolateSettings, model=None):
        self.settings = settings
        info = settings.info
        self.fps = info.fps * settings.factor
        self.total = None if info.n_frames is None else info.n_frames * settings.factor
        self.audio = dict(audio_from=settings.input) if info.has_audio else {}
        workers = settings.workers if settings.factor > 1 else 0
        self.between = Ahead(_between, self._pair, workers, depth=workers)
        self.inputs = ClipFrames(lambda: media.read_video(settings.input), keep=self.between.depth + 3)
        self.made = None  # (k, the in-betweens of the pair k, k + 1)

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
        k, j = divmod(t, self.settings.factor)
        a = self.inputs.get(k)
        if a is None or j == 0:
            return a
        if self.made is None or self.made[0] != k:
            self.made = (k, self.between.get(k))
        return a if self.made[1] is None else self.made[1][j - 1]  # no frame k + 1: the last frame, held

    def _pair(self, k: int) -> tuple | None:
        a, b = self.inputs.get(k), self.inputs.get(k + 1)
        s = self.settings
        return None if a is None or b is None else (a, b, s.factor, s.flow, s.flow_size)

    def close(self) -> None:
        self.between.close()
        self.inputs.close()


def _between(a: np.ndarray, b: np.ndarray, factor: int, method: str, max_side: int | None) -> list[np.ndarray]:
    """The ``factor - 1`` frames between ``a`` and ``b``, evenly spaced in time."""
    if method == "none":
        return [blend(a.astype(np.float32), b.astype(np.float32), j / factor) for j in range(1, factor)]
    flows = pair_flows(a, b, method, max_side)
    return [between_frames(a, b, j / factor, flows=flows) for j in range(1, factor)]
