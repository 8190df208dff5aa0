"""Video stylization: each frame starts from the previous dream warped by the source's optical flow
(occlusions dreamed afresh), so the dream moves with the scene instead of flickering."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from zoomdream import audio, media
from zoomdream.config import Job
from zoomdream.engine import build_dreamer, resolve_engine
from zoomdream.errors import ZoomdreamError
from zoomdream.flow import carried, coherent_init, motion_between, temporal_blend
from zoomdream.frames.levels import to_uint8, to_unit
from zoomdream.interpolation import between_sources, blend
from zoomdream.loops.common import (Ahead, ClipFrames, DreamsEveryNth, LoopSource, check_clip, check_dream_schedules,
                                    dream_cost, flow_size, flow_workers, last_dreamed, seed_and_max_size)
from zoomdream.models import LoadedModel
from zoomdream.schedules import Schedule, parse_schedule
from zoomdream.settings import DreamSettings, EngineSettings, check_frame_size, dream_settings, number

OUTPUTS = media.VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoSettings:
    input: Path
    info: media.VideoInfo
    start: float
    duration: float | None
    every: int
    max_size: int | None
    blend: float
    smooth: float
    flow: str
    interpolate: int  # dream every nth frame, make the rest by interpolation (1: dream all)
    dream: DreamSettings
    engine: EngineSettings
    seed: int
    audio: audio.Track | None = None  # the music schedules read and the output plays (--audio, else the clip's)
    workers: int = 0  # threads computing the source's flow ahead (0: in line)
    flow_size: int | None = None  # the longest side flow is estimated at (None: the frames' own)
    steps: Schedule | None = None  # keyframed steps and step size (None: the dream's, every frame)
    step_size: Schedule | None = None

    def dream_at(self, t: int) -> DreamSettings:
        """Frame t's dream settings: the dream's, with frame t's keyframed steps and step size."""
        if self.steps is None or self.step_size is None:
            return self.dream
        return replace(self.dream, steps=max(0, round(self.steps.at(t))), step_size=self.step_size.at(t))

    @property
    def pins(self) -> dict:
        """Job values the inputs decided, kept in the saved job: an --audio track's SHA-256."""
        return audio.pins(self.audio)

    def cost(self) -> float:
        """``dream_cost`` at the size --max-size shrinks the clip's frames to."""
        width, height = self.info.width, self.info.height
        scale = min(1.0, (self.max_size or max(width, height)) / max(width, height))
        steps = self.steps.at if self.steps is not None else lambda t: self.dream.steps
        return dream_cost(width * scale, height * scale, self.frames, self.interpolate, steps)

    @property
    def fps(self) -> float:
        return self.info.fps / self.every

    @property
    def frames(self) -> int | None:
        """Frames the selected range should yield (None when the clip's length is unknown)."""
        if self.info.duration is None:
            return None
        seconds = max(0.0, self.info.duration - self.start)
        if self.duration is not None:
            seconds = min(seconds, self.duration)
        return math.ceil(round(seconds * self.info.fps, 3) / self.every)


def resolve(job: Job) -> VideoSettings:
    if not job.input:
        raise ZoomdreamError("no input video given (zoomdream video IN.mp4 -o OUT.mp4)")
    seed, max_size = seed_and_max_size(job)
    info = media.probe_video(job.input)
    check_clip(info, job.input)
    check_frame_size(*media.fitted_size(info.width, info.height, max_size), f"video '{job.input}': frame size")
    duration = None if job.duration is None else number(job.duration, "duration", above=0)
    start = number(job.start, "start", low=0)
    if info.duration is not None and start >= info.duration:
        raise ZoomdreamError(f"--start {start:g} is past the end of '{job.input}', which lasts {info.duration:.2f} s "
                             f"(give a start below {info.duration:.2f})")
    settings = VideoSettings(
        input=Path(job.input), info=info, start=start, duration=duration,
        every=number(job.every, "every", low=1, high=10_000, integer=True), max_size=max_size,
        blend=number(job.blend, "blend", low=0, high=1), smooth=number(job.smooth, "smooth", low=0, high=1),
        flow=job.flow, interpolate=number(job.interpolate, "interpolate", low=1, high=16, integer=True),
        dream=DreamSettings(), engine=resolve_engine(job), seed=seed, workers=flow_workers(job),
        flow_size=flow_size(job))
    return with_music(settings, job)


def with_music(settings: VideoSettings, job: Job) -> VideoSettings:
    """The track (--audio, else the clip's own soundtrack) and the dream's steps and step size as schedules
    that may read it, checked over the first 10,000 frames. The track is decoded only if a schedule reads it."""
    s = settings
    track = audio.resolve_track(job, s.fps, (s.input, s.start, s.duration) if s.info.has_audio else None)
    steps, step_size = (parse_schedule(getattr(job, name), name=f"--{name.replace('_', '-')}",
                                       interpolation=job.easing, variables=track) for name in ("steps", "step_size"))
    for t in range(min(s.frames or 10_000, 10_000)):
        check_dream_schedules(steps, step_size, t)
    dream = dream_settings(job.octaves, job.octave_scale, steps.at(0), step_size.at(0), job.max_loss)
    return replace(s, dream=dream, audio=track, steps=steps, step_size=step_size)


def counted_frames(s: VideoSettings) -> int | None:
    """The frames of a clip whose header gives no duration, counted from its packets (read, not decoded), and
    those of them the render takes: the progress bar's total (None where ffmpeg lists none)."""
    times = media.frame_times(s.input, timeout=600)
    if not times:
        return None
    frames = max(0.0, len(times) - s.start * s.info.fps)
    if s.duration is not None:
        frames = min(frames, s.duration * s.info.fps)
    return math.ceil(round(frames, 3) / s.every)  # as ``VideoSettings.frames`` counts from a duration


class Source(DreamsEveryNth, LoopSource):
    """Frame t starts from the dream of frame t - 1 carried along the source's flow. With ``interpolate`` n,
    only every nth source frame is dreamed that way (from the dreamed frame n before), and the frames between
    are the two dreamed neighbours carried along the flow to that source frame and blended.

    All optical flow is between source frames, so it is computed ahead of the dream on worker threads
    (``Ahead``): for each frame t, the motions that frame needs (``needs``)."""

    def __init__(self, settings: VideoSettings, model: LoadedModel):
        self.settings = settings
        self.fps, self.total, self.step = settings.fps, settings.frames, settings.interpolate
        self.audio = settings.audio.writer_options() if settings.audio else {}
        self.dreamer = build_dreamer(settings.engine, model)
        s = settings
        self.motions = Ahead(_motions, self._needs, s.workers if s.flow != "none" else 0)
        # Kept: from the segment's first frame to the last source frame the look-ahead has read.
        self.sources = ClipFrames(lambda: media.read_video(s.input, start=s.start, duration=s.duration,
                                                           every=s.every, max_size=s.max_size),
                                  keep=2 * self.step + 2 + self.motions.depth)
        self.origin = 0  # where dreaming last started afresh: dreamed frames are origin + multiples of n
        self.pair = None  # (first, last, their dreamed frames)
        self.expected = self.total if self.total is not None else counted_frames(settings)  # for the progress bar

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None:
        if previous is None:  # frame 0, or the first warm-up frame of a piece
            source = self.sources.get(t)
            self.origin, self.pair = t, None
            self.motions.restart()
            return None if source is None else to_uint8(self.dreamer.dream(to_unit(source), self.settings.dream_at(t),
                                                                           seed=self.settings.seed))
        span = self._span(t)
        if span is None:
            return None  # the clip ended
        first, last = span
        motions = self.motions.get(t) or {}
        if self.pair is None or self.pair[0] != first:
            self.pair = (first, last, previous, self.dreamed(first, previous, last, motions.get((first, last))))
        _, _, before, after = self.pair
        if t == last:
            return after
        s = self.settings
        if s.flow == "none":
            return blend(before.astype(np.float32), after.astype(np.float32), (t - first) / (last - first))
        return between_sources(before, after, (t - first) / (last - first), motions[first, t], motions[last, t])

    def _span(self, t: int) -> tuple[int, int] | None:
        """The dreamed frames around frame t (t itself if it is dreamed), or None past the clip's end: the
        last of them is n on, or the clip's last frame."""
        first = last_dreamed(t, self.step, self.origin)
        last = next((k for k in range(first + self.step, first, -1) if self.sources.get(k) is not None), None)
        return None if last is None or t > last else (first, last)

    def _needs(self, t: int) -> tuple | None:
        """``_motions``' arguments for frame t (None past the clip's end): the source pairs whose motion frame t
        needs (its segment's own, at its first frame; its neighbours' to it, for a frame between), with their
        frames."""
        span = self._span(t)
        if span is None:
            return None
        first, last = span
        pairs = [(first, last)] if t == first + 1 else []
        if t < last:
            pairs += [(first, t), (last, t)]
        s = self.settings
        return [(pair, self.sources.get(pair[0]), self.sources.get(pair[1])) for pair in pairs], s.flow, s.flow_size

    def dreamed(self, t0: int, dreamed_t0: np.ndarray, t: int, motion) -> np.ndarray:
        """Frame t dreamed from frame t0's dream carried along the source's flow (``motion``; occlusions dreamed
        afresh)."""
        s = self.settings
        before, source = self.sources.get(t0), self.sources.get(t)
        carry = None if motion is None else carried(dreamed_t0, motion)  # one warp serves the start and smoothing
        init = coherent_init(dreamed_t0, before, source, blend=s.blend, method=s.flow, motion=motion, carry=carry)
        # The same roll sequence every frame: similar inputs then get similar dream detail, not fresh jitter.
        dreamed = to_uint8(self.dreamer.dream(to_unit(init), s.dream_at(t), seed=s.seed))
        if motion is not None and s.smooth:
            dreamed = temporal_blend(dreamed, dreamed_t0, motion, s.smooth, carry=carry)
        return dreamed

    def carry(self) -> dict:
        return {"origin": self.origin}

    def restore(self, carry: dict) -> None:
        self.origin = carry.get("origin", 0)
        self.motions.restart()

    def close(self) -> None:
        self.motions.close()
        self.sources.close()


def _motions(pairs: list, method: str, max_side: int | None) -> dict:
    """``motion_between`` for each (pair, frame, frame) given: the motion from the pair's first source frame to
    its second, by pair."""
    if method == "none":
        return {}
    return {pair: motion_between(a, b, method=method, max_side=max_side) for pair, a, b in pairs}
