"""Live: the newest frame of a camera, stream or file dreamed as it arrives, carried along the optical flow
from the last output as ``video`` carries it, so the dream moves with the scene instead of flickering. With
``--noise``, the zoom loop against the clock. ``zoomdream.live`` drives it in real time."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from zoomdream import backend, media
from zoomdream.config import Job
from zoomdream.engine import build_dreamer, resolve_engine
from zoomdream.errors import ZoomdreamError
from zoomdream.flow import (carried_fast, carry_maps, coherent_init, composed, motion_between, shrunk, temporal_blend,
                            upscaled)
from zoomdream.frames.levels import to_uint8, to_unit
from zoomdream.loops.common import LoopSource, constant_dream, flow_size, seed_and_max_size
from zoomdream.media import stream
from zoomdream.live import controls
from zoomdream.live.controls import SCHEDULES, Controls, Look
from zoomdream.media.files import existing_file
from zoomdream.models import LoadedModel
from zoomdream.objective import parse_layers
from zoomdream.schedules import parse_schedule
from zoomdream.settings import MAX_FRAMES, DreamSettings, EngineSettings, check_frame_size, number

OUTPUTS = ()  # live outputs are checked by zoomdream.media.stream.check_output
SCALES = (0.75, 0.5)  # the dream's size as a share of the output's, where fewer steps and octaves are not enough
FLOW_SIZE = 320  # live's --flow-size where the job gives none: at 720p the frame's own took more than a frame's time


@dataclass(frozen=True)
class LiveSettings:
    source: str | None  # a camera, URL, video file or image (None: --noise, or the studio's page)
    kind: str  # "camera", "url", "file", "image", "noise" or "page"
    size: tuple[int, int]  # (width, height) of every output frame
    fps: float  # the rate the governor holds, and the most frames a second made
    seconds: float | None  # stop this long after the first source frame
    frames: int | None  # or after this many frames dreamed
    loop_source: bool
    blend: float
    smooth: float
    flow: str
    flow_size: int | None
    dream: DreamSettings
    engine: EngineSettings
    seed: int
    zoom: object = None  # --noise: the zoom loop's settings (loops.zoom.ZoomSettings)
    audio: str | None = None  # the music: "mic", "source" or a file's path (zoomdream.audio.inputs)


def source_kind(source: str | None, noise: bool) -> str:
    if noise:
        if source:
            raise ZoomdreamError(f"give a source or --noise, not both (drop '{source}' or --noise)")
        return "noise"
    if not source:
        raise ZoomdreamError("no source given: pass a camera (/dev/video0), a stream URL, a file, or --noise")
    if stream.camera_device(source):
        return "camera"
    if stream.scheme(source):
        return "url"
    existing_file(source)
    return "image" if Path(source).suffix.lower() in media.IMAGE_EXTENSIONS else "file"


def fit(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) scaled so the longest side is ``longest`` at most, even."""
    scale = min(1.0, longest / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def at_first_frame(job: Job) -> Job:
    """``job`` with its live schedules (which may read the music) as numbers: their values at frame 0 in
    silence, what the settings start from; the live controls evaluate them again every frame."""
    values = {name: controls.at_first_frame(name, getattr(job, name), job.easing) for name in SCHEDULES}
    return replace(job, **{**values, "steps": round(values["steps"])})


def resolve(job: Job, page: bool = False) -> LiveSettings:
    """The job's live settings; ``page``: the frames come from the studio's Live tab (a visitor's webcam),
    handed to ``Source.dreamed`` one by one, and the job names no source."""
    from zoomdream.loops.zoom import parse_size

    first = at_first_frame(job)
    seed, max_size = seed_and_max_size(job)
    kind = "page" if page else source_kind(job.input, job.noise)
    size = parse_size(job.size)
    if max_size is not None:  # the source's own aspect where it is known before it plays
        if kind == "image":
            height, width = media.read_image(job.input).shape[:2]
        elif kind == "file":
            info = media.probe_video(job.input)
            width, height = info.width, info.height
        else:
            width, height = size
        size = fit(width, height, max_size)
        check_frame_size(*size, "--max-size gives")
    if kind == "url":
        stream.check_url(job.input, output=False)
    fps = number(job.fps, "fps", low=1, high=240)
    seconds = None if job.seconds is None else number(job.seconds, "seconds", above=0)
    frames = None if job.frames is None else number(job.frames, "frames", low=1, high=MAX_FRAMES, integer=True)
    zoom = None
    if kind == "noise":
        from zoomdream.loops import zoom as zoom_loop

        w, h = size
        zoom = zoom_loop.resolve(replace(first, command="zoom", input=None, size=f"{w}x{h}", max_size=None,
                                         frames=MAX_FRAMES, audio=None, interpolate=1, loop=False))
    from zoomdream.audio.inputs import check_live_audio

    audio = check_live_audio(job.audio, kind, job.input)
    return LiveSettings(
        source=job.input, kind=kind, size=size, fps=fps, seconds=seconds, frames=frames, loop_source=job.loop_source,
        blend=number(job.blend, "blend", low=0, high=1), smooth=number(job.smooth, "smooth", low=0, high=0.99),
        flow=job.flow, flow_size=flow_size(job) or FLOW_SIZE, dream=constant_dream(first),
        engine=resolve_engine(job, keyframed=kind == "noise"), seed=seed, zoom=zoom, audio=audio)


def levels(dream: DreamSettings) -> list[tuple[int, int, float]]:
    """The governor's ladder, richest first, as (octaves, steps, share of the output's size): the job's
    own, then fewer steps, then fewer octaves, then a smaller dream (scaled up to the output)."""
    if dream.steps == 0:  # no dream asked for (strength off): nothing to make cheaper, and no step to add
        return [(dream.octaves, 0, 1.0)]
    ladder = [(dream.octaves, s, 1.0) for s in range(dream.steps, 0, -1)]
    ladder += [(o, 1, 1.0) for o in range(dream.octaves - 1, 0, -1)]
    return ladder + [(1, 1, scale) for scale in SCALES]


@dataclass(frozen=True)
class Prepared:
    """A source frame's work that needs only the source, which ``zoomdream.live`` does on a second thread
    while the frame before it dreams: its settings, the frame at the dream's size and the motion from the
    frame before."""
    small: np.ndarray
    coarse: tuple | None  # the motion (flow, mask) from the source frame prepared before, at the flow's size
    motion: tuple | None  # the same at the dream's size (None: the first)
    maps: tuple | None  # its flow's carry_maps
    look: Look  # the controls' settings for this frame
    octaves: int  # the governor's level it was prepared at
    steps: int
    arrived: float  # when the source frame arrived
    taken: float  # when it was taken: the frame's work starts


@dataclass(frozen=True)
class Started:
    """A prepared frame ready to dream: what it dreams from and with."""
    ready: Prepared
    init: np.ndarray  # float32 in [-1, 1] (the engine's), at the dream's size
    carry: np.ndarray | None  # the output before, carried onto this frame (None: carried when finished)
    settings: DreamSettings
    dreamer: object
    weights: np.ndarray | None


class Source(LoopSource):
    """Frame t is the newest source frame, dreamed from the previous output carried along the flow between the
    source frames (occlusions and changed pixels dreamed afresh), then pulled toward that carried output
    (``smooth``). Its settings are the ``controls``' at that frame (OSC, the page and presets change them);
    ``level`` (set by the governor) picks the cheaper octaves, steps and dream size of ``levels``. ``frame``
    returns None when no new source frame came within a frame's time: the caller holds the last."""

    def __init__(self, settings: LiveSettings, model: LoadedModel, controls: Controls,
                 frames: stream.NewestFrames | None = None):
        self.settings, self.model, self.controls = settings, model, controls
        self.fps, self.total = settings.fps, None
        self.levels = self.ladder(settings.dream)
        self.level = 0
        self.frames = frames  # the reader of a camera, URL or file (started by the caller)
        w, h = settings.size
        self.still = _cover(media.read_image(settings.source), w, h) if settings.kind == "image" else None
        self.arrived = 0.0  # when the source frame of the last frame made arrived (latency)
        self.taken = 0.0  # when it was taken: the frame's work starts
        self.before = None  # (the source frame, the output) of the last frame made, at the dream's size
        self.last = None  # the source frame prepared last, at the output's size
        self.zoom = None
        if settings.kind == "noise":
            from zoomdream.loops.zoom import Source as Zoom

            self.zoom = Zoom(settings.zoom, model)
            self.dreamer = self.zoom.dreamer
        else:
            self.dreamer = build_dreamer(settings.engine, model)
        self.layers, self.weights = settings.engine.layers, None  # what the dreamer dreams, and its weights
        self.version = -1  # the controls' version last applied
        self.zoomed = None  # (level, dream, motion) the zoom's settings were last made from
        self.overlap = backend.has_accelerator()  # the CPU's work then overlaps the dream (live.clock.Overlap)

    def ladder(self, dream: DreamSettings) -> list[tuple[int, int, float]]:
        """``levels`` of this frame's dream (a zoom keeps its frame's size)."""
        ladder = levels(dream)
        return ladder if self.settings.kind != "noise" else [level for level in ladder if level[2] == 1.0]

    def rung(self) -> tuple[int, int, float]:
        """(octaves, steps, share of the size) the governor's level gives now."""
        return self.levels[min(self.level, len(self.levels) - 1)]

    def use_layers(self, spec: str | None) -> None:
        """Dream ``spec`` (None: the model's default layers) from the next frame on: with the compiled dreamer
        where it has every term (only the weights change), else a new one (one compile's stall)."""
        if spec == self.layers:
            return
        terms = parse_layers(spec or self.model.backbone.default_layers)
        known = {(term.layer, term.channels): i for i, term in enumerate(self.dreamer.objective.terms)}
        if all((term.layer, term.channels) in known for term in terms):
            weights = np.zeros(len(known), np.float32)
            for term in terms:
                weights[known[term.layer, term.channels]] += term.weight
        else:
            self.dreamer = build_dreamer(replace(self.settings.engine, layers=spec), self.model, terms)
            weights = self.dreamer.objective.weights()
        self.layers, self.weights = spec, weights
        if self.zoom is not None:
            self.zoom.dreamer, self.zoom.weights_at = self.dreamer, lambda u: weights

    def apply(self, look: Look) -> None:
        """The controls' settings for this frame: the governor's ladder over its dream, its layers, and for a
        zoom its motion, all as the controls evaluated them for this frame."""
        self.levels = self.ladder(look.dream)
        if look.version != self.version:
            self.use_layers(look.layers)
            self.version = look.version
        made_from = (self.rung(), look.dream, look.motion)
        if self.zoom is not None and made_from != self.zoomed:
            self.zoomed = made_from
            octaves, steps, _ = self.rung()
            zs = self.zoom.settings
            self.zoom.settings = replace(
                zs, motion={name: parse_schedule(value, name=f"--{name}") for name, value in look.motion.items()},
                later=replace(zs.later, octaves=octaves, octave_scale=look.dream.octave_scale),
                steps=parse_schedule(steps, name="--steps"),
                step_size=parse_schedule(look.dream.step_size, name="--step-size"))

    def warm_up(self) -> None:
        """Dream a blank frame at every level's sizes, so compiling the step for a size is never a frame's
        (a change of level then costs no stall; this is before the clock starts)."""
        if self.zoom is not None:
            return
        for octaves, scale in dict.fromkeys((o, scale) for o, _, scale in self.levels):
            w, h = self.dream_size(scale)
            self.dreamer.dream(np.zeros((h, w, 3), np.float32), replace(self.settings.dream, octaves=octaves,
                                                                         steps=1), seed=0)

    def dream_size(self, scale: float) -> tuple[int, int]:
        w, h = self.settings.size
        return (w, h) if scale == 1.0 else (max(16, round(w * scale / 2) * 2), max(16, round(h * scale / 2) * 2))

    def next_source(self, timeout: float) -> np.ndarray | None:
        """The newest source frame at the output's size (None: none new came within ``timeout``)."""
        if self.still is not None:
            self.arrived = self.taken = time.monotonic()
            return self.still
        frame = self.frames.take(timeout)
        if frame is not None:
            self.arrived, self.taken = self.frames.arrived, time.monotonic()
        return frame

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
        if self.zoom is not None:  # the zoom loop: no source to wait for
            self.arrived = self.taken = time.monotonic()
            self.apply(self.controls.look(t, self.taken))
            made = self.zoom.frame(t, previous, rng)
            self.first = self.zoom.first
            return made
        source = self.next_source(1.0 / self.settings.fps)
        if source is None:
            return None
        return self.dreamed(self.prepare(source, t))

    def prepare(self, source: np.ndarray, t: int, arrived: float | None = None) -> Prepared:
        """Frame t's work that needs only its source and the controls: its settings (read here, once a frame),
        its resize and the flow from the frame prepared before. It needs no dream, so it can run beside the
        dream of the frame before (frames must then be dreamed in the order prepared). ``arrived``: when a
        frame handed in (the studio's) came; by default, when ``next_source`` took it."""
        if arrived is not None:
            self.arrived = self.taken = arrived
        s = self.settings
        look = self.controls.look(t, self.taken)
        ladder = self.ladder(look.dream)
        octaves, steps, scale = ladder[min(self.level, len(ladder) - 1)]
        small = _resized(source, self.dream_size(scale))
        coarse = motion = maps = None
        at = shrunk(small, s.flow_size)  # where the motion is measured
        if self.last is not None and s.flow != "none":
            coarse = motion_between(_resized(self.last, at.shape[1::-1]), at, method=s.flow)
            motion = upscaled(coarse, small.shape[1::-1])
            maps = carry_maps(motion[0])
        self.last = at
        return Prepared(small, coarse, motion, maps, look, octaves, steps, self.arrived, self.taken)

    def dreamed(self, ready: Prepared) -> np.ndarray:
        """Frame ``ready`` dreamed and finished, the serial loop's way (``start``, ``dream``, ``finish``)."""
        started = self.start(ready)
        return self.finish(started, self.dream(started))

    def start(self, ready: Prepared, between: Prepared | None = None) -> Started:
        """What frame ``ready`` dreams from: the last output carried along the motion onto it, mixed into its
        source. ``between``: a frame dreaming meanwhile, whose output is not made yet (``clock.Overlap``); the
        output before it is then carried over both frames' motion."""
        s, look = self.settings, ready.look
        self.apply(look)
        settings = replace(look.dream, octaves=ready.octaves, steps=ready.steps)
        small, motion, maps = ready.small, ready.motion, ready.maps
        chained = between is not None and s.flow != "none"  # the motion over both frames is wanted
        if self.before is None or chained and (between.coarse is None or ready.coarse is None or
                                               between.coarse[0].shape != ready.coarse[0].shape):
            return Started(ready, to_unit(small), None, settings, self.dreamer, self.weights)
        if chained:
            motion = upscaled(composed(between.coarse, ready.coarse), small.shape[1::-1])
            maps = carry_maps(motion[0])
        before, output = (_resized(frame, small.shape[1::-1]) for frame in self.before)
        carry = None if motion is None else carried_fast(output, maps)
        init = coherent_init(output, before, small, blend=look.blend, method=s.flow, motion=motion, carry=carry)
        carry = carry if between is None else None  # carried over two frames: finish carries over one
        return Started(ready, to_unit(init), carry, settings, self.dreamer, self.weights)

    def dream(self, started: Started) -> np.ndarray:
        """The dream of a started frame (any thread: it reads nothing the others change)."""
        # The same roll sequence every frame: similar inputs then get similar dream detail, not fresh jitter.
        return started.dreamer.dream(started.init, started.settings, seed=self.settings.seed, weights=started.weights)

    def finish(self, started: Started, dream: np.ndarray) -> np.ndarray:
        """The output: the dream pulled toward the last output carried onto it (``smooth``); frames are
        finished in the order started."""
        ready, look = started.ready, started.ready.look
        dreamed = to_uint8(dream)
        if self.before is not None and ready.motion is not None and look.smooth:
            output = _resized(self.before[1], ready.small.shape[1::-1])
            carry = started.carry if started.carry is not None else carried_fast(output, ready.maps)
            dreamed = temporal_blend(dreamed, output, ready.motion, look.smooth, carry=carry)
        self.before = (ready.small, dreamed)
        return _resized(dreamed, self.settings.size)

    def close(self) -> None:
        if self.frames is not None:
            self.frames.close()


def _resized(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frame.shape[1::-1] == size:
        return frame
    shrink = size[0] < frame.shape[1]
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _cover(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """``image`` scaled to cover w x h and cropped to it, centred (as the reader does with ffmpeg)."""
    scale = max(w / image.shape[1], h / image.shape[0])
    big = _resized(image, (max(w, round(image.shape[1] * scale)), max(h, round(image.shape[0] * scale))))
    y, x = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return np.ascontiguousarray(big[y:y + h, x:x + w])
