"""Checks every loop kind makes the same way while resolving a job."""
from __future__ import annotations

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
