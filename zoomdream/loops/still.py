"""One still image: a source of a single frame, the input dreamed over the full octave pyramid."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoomdream import media
from zoomdream.ascent import to_uint8, to_unit
from zoomdream.config import Job
from zoomdream.engine import build_dreamer, fit_max_size, resolve_engine
from zoomdream.errors import ZoomdreamError
from zoomdream.models import LoadedModel
from zoomdream.settings import MAX_SIDE, DreamSettings, EngineSettings, check_frame_size, dream_settings, number

OUTPUTS = media.IMAGE_EXTENSIONS


@dataclass(frozen=True)
class StillSettings:
    input: Path
    max_size: int | None
    dream: DreamSettings
    engine: EngineSettings
    seed: int


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
    img = fit_max_size(media.read_image(path), max_size)
    check_frame_size(img.shape[1], img.shape[0], f"input '{path}' is")
    return img


def resolve(job: Job) -> StillSettings:
    if not job.input:
        raise ZoomdreamError("no input image given (zoomdream image IN.jpg -o OUT.png)")
    dream, (seed, max_size) = constant_dream(job), seed_and_max_size(job)
    read_start(job.input, max_size)  # a bad input fails before the model loads
    return StillSettings(Path(job.input), max_size, dream, resolve_engine(job), seed)


class Source:
    """Frame 0 is the dreamed input; there is no frame 1."""

    fps, total, needs_previous, audio = 0.0, 1, False, {}

    def __init__(self, settings: StillSettings, model: LoadedModel):
        self.settings = settings
        self.image = read_start(str(settings.input), settings.max_size)
        self.dreamer = build_dreamer(settings.engine, model)
        self.steps = settings.dream.octaves * settings.dream.steps
        self.on_step = None  # the runner's progress, per ascent step

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
        if t > 0:
            return None
        return to_uint8(self.dreamer.dream(to_unit(self.image), self.settings.dream, seed=self.settings.seed,
                                           on_step=self.on_step))

    def carry(self) -> dict:
        return {}

    def restore(self, carry: dict) -> None:
        pass

    def close(self) -> None:
        pass
