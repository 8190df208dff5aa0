"""Typed, resolved settings shared by every loop, with their defaults in one place, and the limits that keep a
render finite and its memory bounded.

The user-facing schema (``config.Job``) takes its defaults from these dataclasses. No TensorFlow or numpy here,
so the command line answers ``--help`` at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from zoomdream.errors import ZoomdreamError

# Limits, documented in the README. They keep a typo from allocating gigabytes or running for years.
MAX_SIDE = 16384  # pixels on either side of a frame
MAX_PIXELS = 40_000_000  # a frame's area: 8K (7680x4320) fits, with room for tiles and octaves
MAX_STEPS = 10_000
MAX_OCTAVES = 20
MAX_FRAMES = 10_000_000
MAX_TILE = 8192
CPU_TILE = 512
GPU_TILE = 2048  # on a GPU 512-px tiles leave the card idle (figures: the Benchmarks page)


@dataclass(frozen=True)
class DreamSettings:
    """How hard and at which scales to dream one image (the defaults are the still image's, tuned on
    efficientnet-lite0; the tile size belongs to the compiled ``Dreamer``)."""

    octaves: int = 4
    octave_scale: float = 1.4
    steps: int = 20
    step_size: float = 0.02
    max_loss: float | None = None


@dataclass(frozen=True)
class EngineSettings:
    """Which network, what to maximise, and how it is compiled: everything that builds the ``Dreamer``."""

    model: str = "efficientnet-lite0"
    weights: str | None = None
    precision: str = "auto"
    layers: str | None = None  # None: the model's default layers
    loss: str = "square"
    tv: float = 0.0
    guide: str | None = None
    tile: int | None = None  # None: the machine's (CPU_TILE, or GPU_TILE on a GPU), asked when the engine is built


@dataclass(frozen=True)
class OutputSettings:
    """Where a loop's frames go."""

    path: Path
    crf: int = 18
    gif_fps: float | None = None
    gif_width: int | None = None
    frames_dir: Path | None = None
    preview: int = 0
    resume: bool = False


def number(value, flag: str, *, low: float | None = None, high: float | None = None, integer: bool = False,
           above: float | None = None, frame: int | None = None) -> float:
    """A finite number inside its range, or a one-line error that names the flag (and the frame, for a
    schedule's value) and the range."""
    name = "--" + flag.replace("_", "-") + ("" if frame is None else f" at frame {frame}:")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ZoomdreamError(f"{name} {value!r} is not a number") from None
    if not math.isfinite(x):
        raise ZoomdreamError(f"{name} {value!r} must be a finite number")
    if integer and not x.is_integer():
        raise ZoomdreamError(f"{name} {value!r} must be a whole number")
    if above is not None and x <= above:
        raise ZoomdreamError(f"{name} {value!r} must be greater than {above:g}")
    if (low is not None and x < low) or (high is not None and x > high):
        span = f"from {low:g} to {high:g}" if low is not None and high is not None else (
            f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise ZoomdreamError(f"{name} {value!r} is out of range (give a value {span})")
    return int(x) if integer else x


def check_frame_size(width: int, height: int, what: str) -> None:
    """Refuse frames past the documented limits before anything is allocated for them. ``what`` names the size:
    "--size", "video 'clip.mp4': frame size"."""
    if width < 8 or height < 8:
        raise ZoomdreamError(f"{what} {width}x{height} is too small (at least 8x8 pixels)")
    if max(width, height) > MAX_SIDE or width * height > MAX_PIXELS:
        raise ZoomdreamError(f"{what} {width}x{height} is too large (at most {MAX_SIDE} pixels a side and "
                             f"{MAX_PIXELS // 1_000_000} megapixels; use --max-size to shrink the input)")


def dream_settings(octaves, octave_scale, steps, step_size, max_loss) -> DreamSettings:
    """DreamSettings from user values, each checked: finite, and inside the documented limits."""
    return DreamSettings(
        octaves=number(octaves, "octaves", low=1, high=MAX_OCTAVES, integer=True),
        octave_scale=number(octave_scale, "octave_scale", above=1, high=10),
        steps=round(number(steps, "steps", low=0, high=MAX_STEPS)),
        step_size=number(step_size, "step_size", low=0, high=10),
        max_loss=None if max_loss is None else number(max_loss, "max_loss"),
    )
