"""The infinite zoom: each frame is the previous one moved a little (zoom, rotation, shift) and dreamed again.

Frame 0 gets the still image's full dream; later frames need far less work, since they already carry the
dream. Colour statistics are pulled toward frame 0's, so long runs do not drift to grey or one colour.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from zoomdream import audio, media
from zoomdream.ascent import to_uint8, to_unit
from zoomdream.config import Job
from zoomdream.engine import build_dreamer, check_terms, resolve_engine
from zoomdream.errors import ZoomdreamError
from zoomdream.loops.common import read_start, seed_and_max_size
from zoomdream.models import LoadedModel
from zoomdream.motion import Schedule, TextSchedule, parse_schedule, parse_text_schedule, transform_frame
from zoomdream.objective import LayerTerm, parse_layers
from zoomdream.settings import (MAX_FRAMES, MAX_STEPS, DreamSettings, EngineSettings, check_frame_size,
                                dream_settings, number)

OUTPUTS = media.VIDEO_EXTENSIONS
MOTION = ("zoom", "angle", "tx", "ty")


@dataclass(frozen=True)
class ZoomSettings:
    start: Path | None  # None: seeded noise of ``size``
    size: tuple[int, int]  # (width, height) of every frame
    max_size: int | None
    noise_scale: float
    frames: int
    fps: float
    motion: dict[str, Schedule]
    center: tuple[float, float] | None
    steps: Schedule
    step_size: Schedule
    layers: TextSchedule
    color_match: float
    first: DreamSettings  # frame 0: the still image's dream
    later: DreamSettings  # later frames, before their keyframed steps and step size
    engine: EngineSettings
    seed: int
    audio: audio.Track | None = None  # the music schedules read and the output plays

    @property
    def pins(self) -> dict:
        """Job values the inputs decided, kept in the saved job: the frame count, the track's SHA-256."""
        return dict(frames=self.frames, **audio.pins(self.audio))


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ZoomdreamError(f"--size '{text}' is not WIDTHxHEIGHT (e.g. 640x360)") from None
    check_frame_size(w, h, "--size")
    return w, h


def parse_center(text: str | None, size: tuple[int, int]) -> tuple[float, float] | None:
    """The zoom centre in pixels; it must lie inside the frame or near it (a frame's size beyond an edge)."""
    if not text:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ZoomdreamError(f"--center '{text}' is not X,Y in pixels (e.g. 320,180)") from None
    w, h = size
    if not (np.isfinite(x) and np.isfinite(y) and -w <= x <= 2 * w and -h <= y <= 2 * h):
        raise ZoomdreamError(f"--center '{text}' is outside the {w}x{h} frame (give X,Y within it)")
    return x, y


def check_motion(values: dict[str, float], t: int, size: tuple[int, int]) -> None:
    """Per-frame motion must be finite and sane: a zoom between 0.2x and 5x, shifts under a frame's size."""
    w, h = size
    limits = {"zoom": (0.2, 5.0), "angle": (-360.0, 360.0), "tx": (-w, w), "ty": (-h, h)}
    for name, value in values.items():
        low, high = limits[name]
        if not (np.isfinite(value) and low <= value <= high):
            raise ZoomdreamError(f"--{name} is {value:g} at frame {t}, outside {low:g} to {high:g} per frame "
                                 f"(check the schedule)")


def layer_blend(layers: TextSchedule) -> tuple[tuple[LayerTerm, ...], callable]:
    """The union objective of a keyframed layer schedule, and per frame the weight vector over its terms, so
    travelling through the network changes inputs to the compiled step, never the step itself."""
    index: dict[tuple, int] = {}
    for _, text in layers.keys:
        for term in parse_layers(text):
            index.setdefault((term.layer, term.channels), len(index))
    terms = tuple(LayerTerm(layer, 1.0, channels) for layer, channels in index)

    def weights_at(t: int) -> np.ndarray:
        weights = np.zeros(len(index), np.float32)
        for text, share in layers.blend_at(t):
            for term in parse_layers(text):
                weights[index[(term.layer, term.channels)]] += share * term.weight
        return weights

    return terms, weights_at


def resolve(job: Job) -> ZoomSettings:
    seed, max_size = seed_and_max_size(job)
    fps = number(job.fps, "fps", above=0, high=1000)
    track = audio.resolve_track(job, fps)
    frames = number(audio.frame_count(job.frames, track, 120), "frames", low=1, high=MAX_FRAMES, integer=True)
    if job.noise:
        start, size = None, parse_size(job.size)
    elif job.input:
        img = read_start(job.input, max_size)
        start, size = Path(job.input), (img.shape[1] // 2 * 2, img.shape[0] // 2 * 2)
    else:
        raise ZoomdreamError("no start given: pass an input image, or --noise --size WxH")

    def schedule(name: str) -> Schedule:
        return parse_schedule(getattr(job, name), name=f"--{name.replace('_', '-')}", interpolation=job.easing,
                              variables=track)

    motion = {name: schedule(name) for name in MOTION}
    steps, step_size = schedule("steps"), schedule("step_size")
    for t in range(min(frames, 10_000)):  # the whole schedule where it is short; beyond, checked per frame
        check_frame(motion, steps, step_size, t, size)
    layers = parse_text_schedule(job.layers or "", name="--layers") if job.layers else None
    if layers is not None:
        for _, text in layers.keys:
            check_terms(parse_layers(text), text)
    still = DreamSettings()  # frame 0 gets the still image's octaves and steps
    first = dream_settings(still.octaves, job.octave_scale, still.steps, 0.0, job.max_loss)
    later = dream_settings(job.octaves, job.octave_scale, 0, 0.0, job.max_loss)
    return ZoomSettings(
        start=start, size=size, max_size=max_size, frames=frames,
        noise_scale=number(job.noise_scale, "noise_scale", low=0, high=1),
        fps=fps, motion=motion, center=parse_center(job.center, size),
        steps=steps, step_size=step_size, layers=layers, color_match=number(job.color_match, "color_match", low=0,
                                                                            high=1),
        first=first, later=later, engine=resolve_engine(job, keyframed=True), seed=seed, audio=track)


def check_frame(motion, steps, step_size, t: int, size) -> None:
    check_motion({name: s.at(t) for name, s in motion.items()}, t, size)
    number(steps.at(t), "steps", low=0, high=MAX_STEPS, frame=t)
    number(step_size.at(t), "step_size", low=0, high=10, frame=t)


class Source:
    needs_previous = True
    audio: dict = {}

    def __init__(self, settings: ZoomSettings, model: LoadedModel):
        self.settings = settings
        self.audio = settings.audio.writer_options() if settings.audio else {}
        self.fps, self.total = settings.fps, settings.frames
        layers = settings.layers or parse_text_schedule(model.backbone.default_layers)
        terms, self.weights_at = layer_blend(layers)
        self.dreamer = build_dreamer(settings.engine, model, terms)
        self.reference = None  # frame 0's colour statistics

    def start(self, rng: np.random.Generator) -> np.ndarray:
        """The first input, [-1, 1]: the input image (even-sized), or seeded noise around mid-grey."""
        s = self.settings
        if s.start is None:
            w, h = s.size
            noise = rng.random((h, w, 3), dtype=np.float32)  # float32 from the start: no float64 copy
            return (noise * np.float32(2 * s.noise_scale) - np.float32(s.noise_scale)).astype(np.float32)
        img = read_start(str(s.start), s.max_size)
        return to_unit(img[: s.size[1], : s.size[0]])

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        s = self.settings
        if t == 0:
            dreamed = self.dreamer.dream(self.start(rng), replace_steps(s.first, step_size=s.step_size.at(0)),
                                         weights=self.weights_at(0), rng=rng)
            frame = to_uint8(dreamed)
            self.reference = stats(to_unit(frame))
            return frame
        check_frame(s.motion, s.steps, s.step_size, t, s.size)
        image = transform_frame(to_unit(previous), **{k: m.at(t) for k, m in s.motion.items()}, center=s.center)
        settings = replace_steps(s.later, steps=max(0, round(s.steps.at(t))), step_size=s.step_size.at(t))
        dreamed = self.dreamer.dream(image, settings, weights=self.weights_at(t), rng=rng)
        return to_uint8(color_match(dreamed, self.reference, s.color_match))

    def carry(self) -> dict:
        return {"reference": [list(map(float, part)) for part in self.reference]}

    def restore(self, carry: dict) -> None:
        self.reference = tuple(np.array(part) for part in carry["reference"])

    def close(self) -> None:
        pass


def replace_steps(settings: DreamSettings, **changes) -> DreamSettings:
    return DreamSettings(**{**settings.__dict__, **changes})


def color_match(img: np.ndarray, reference_stats: tuple[np.ndarray, np.ndarray], strength: float) -> np.ndarray:
    """Move each channel's mean and std toward the reference's: long feedback loops otherwise drift to
    grey or to one saturated colour. One per-channel multiply-add: ``img * gain + offset``."""
    if strength <= 0:
        return img
    mean, std = stats(img)
    ref_mean, ref_std = reference_stats
    ratio = ref_std / std
    gain = 1.0 + strength * (ratio - 1.0)
    offset = strength * (ref_mean - mean * ratio)
    return np.clip(img * gain.astype(np.float32) + offset.astype(np.float32), -1.0, 1.0)


def stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation (OpenCV's single pass, far faster than numpy's here)."""
    mean, std = cv2.meanStdDev(np.ascontiguousarray(img, dtype=np.float32))
    return mean.ravel(), std.ravel() + 1e-6
