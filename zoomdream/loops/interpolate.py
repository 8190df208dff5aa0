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
from zoomdream.loops.common import ClipFrames, LoopSource
from zoomdream.settings import check_frame_size, number

OUTPUTS = media.VIDEO_EXTENSIONS
NEEDS_MODEL = False


@dataclass(frozen=True)
class InterpolateSettings:
    input: Path
    info: media.VideoInfo
    factor: int
    flow: str


def resolve(job: Job) -> InterpolateSettings:
    if not job.input:
        raise ZoomdreamError("no input video given (zoomdream interpolate IN.mp4 -o OUT.mp4 --factor 2)")
    info = media.probe_video(job.input)
    check_frame_size(info.width, info.height, f"video '{job.input}' is")
    factor = number(job.factor, "factor", low=1, high=16, integer=True)
    number(info.fps * factor, "factor", high=1000)
    return InterpolateSettings(Path(job.input), info, factor, job.flow)


class Source(LoopSource):
    def __init__(self, settings: InterpolateSettings, model=None):
        self.settings = settings
        info = settings.info
        self.fps = info.fps * settings.factor
        self.total = None if info.n_frames is None else info.n_frames * settings.factor
        self.audio = dict(audio_from=settings.input) if info.has_audio else {}
        self.inputs = ClipFrames(lambda: media.read_video(settings.input))
        self.flows = None  # (k, flows of the pair k, k + 1)

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
        factor = self.settings.factor
        k, j = divmod(t, factor)
        a = self.inputs.get(k)
        if a is None:
            return None
        b = self.inputs.get(k + 1) if j else None
        if b is None:  # frame F*k itself, or the held last frame
            return a
        s = j / factor
        if self.settings.flow == "none":
            return blend(a.astype(np.float32), b.astype(np.float32), s)
        if self.flows is None or self.flows[0] != k:
            self.flows = (k, pair_flows(a, b, self.settings.flow))
        return between_frames(a, b, s, flows=self.flows[1])

    def close(self) -> None:
        self.inputs.close()
