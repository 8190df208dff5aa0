"""One still image: a source of a single frame, the input dreamed over the full octave pyramid."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoomdream import media
from zoomdream.config import Job
from zoomdream.engine import build_dreamer, resolve_engine
from zoomdream.errors import ZoomdreamError
from zoomdream.frames.levels import to_uint8, to_unit
from zoomdream.loops.common import LoopSource, constant_dream, dream_cost, read_start, seed_and_max_size
from zoomdream.models import LoadedModel
from zoomdream.settings import DreamSettings, EngineSettings

OUTPUTS = media.IMAGE_EXTENSIONS


@dataclass(frozen=True)
class StillSettings:
    input: Path
    max_size: int | None
    dream: DreamSettings
    engine: EngineSettings
    seed: int

    def cost(self) -> float:
        height, width = read_start(str(self.input), self.max_size).shape[:2]
        return dream_cost(width, height, 1, 1, lambda t: self.dream.steps)


def resolve(job: Job) -> StillSettings:
    if not job.input:
        raise ZoomdreamError("no input image given (zoomdream image IN.jpg -o OUT.png)")
    dream, (seed, max_size) = constant_dream(job), seed_and_max_size(job)
    read_start(job.input, max_size)  # a bad input fails before the model loads
    return StillSettings(Path(job.input), max_size, dream, resolve_engine(job), seed)


class Source(LoopSource):
    """Frame 0 is the dreamed input; there is no frame 1."""

    total = 1

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
