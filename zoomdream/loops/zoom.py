"""The infinite zoom: each frame is the previous one moved a little (zoom, rotation, shift) and dreamed again.

Frame 0 gets the still image's full dream; later frames need far less work, since they already carry the
dream. Colour statistics are pulled toward frame 0's, so long runs do not drift to grey or one colour.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from zoomdream import audio, backend, media
from zoomdream.config import Job
from zoomdream.engine import build_dreamer, check_terms, resolve_engine
from zoomdream.errors import ZoomdreamError
from zoomdream.frames import levels
from zoomdream.frames.colour import color_match, color_match_on_device, stats
from zoomdream.frames.levels import to_uint8, to_unit
from zoomdream.frames.warp import as_3x3, transform_matrix, warp_affine, warp_evenly, warp_evenly_on_device
from zoomdream.interpolation import between_affine
from zoomdream.loops.common import (DreamsEveryNth, LoopSource, check_dream_schedules, dream_cost, last_dreamed,
                                    read_start, seed_and_max_size)
from zoomdream.models import LoadedModel
from zoomdream.objective import LayerTerm, parse_layers
from zoomdream.schedules import Schedule, TextSchedule, parse_schedule, parse_text_schedule
from zoomdream.settings import (MAX_FRAMES, DreamSettings, EngineSettings, check_frame_size,
                                dream_settings, number)

OUTPUTS = media.VIDEO_EXTENSIONS
MOTION = ("zoom", "angle", "tx", "ty")
WARM_UP = 12  # frames a loop's frame 0 is carried and dreamed along the path after the still's dream
NESTED = 4  # a loop's frame 0 holds itself nested down to this fraction of its size (finer copies: texture)
REWRITTEN = 0.15  # the share of frame 0's picture one closing dream rewrites (fitted: it evens the closing steps)


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
    loop: bool  # the last frame flows into the first
    loop_frames: int  # how many frames before the wrap are pulled toward frame 0 (3/4 of the loop, at most 72)
    interpolate: int  # dream every nth frame, make the rest by interpolation (1: dream all)
    first: DreamSettings  # frame 0: the still image's dream
    later: DreamSettings  # later frames, before their keyframed steps and step size
    engine: EngineSettings
    seed: int
    audio: audio.Track | None = None  # the music schedules read and the output plays

    @property
    def pins(self) -> dict:
        """Job values the inputs decided, kept in the saved job: the frame count, the track's SHA-256."""
        return dict(frames=self.frames, **audio.pins(self.audio))

    def cost(self) -> float:
        return dream_cost(*self.size, self.frames, self.interpolate, self.steps.at)


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
    fps = number(job.fps, "fps", low=0.01, high=1000)
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
            check_terms(parse_layers(text), text, job)
    interpolate = number(job.interpolate, "interpolate", low=1, high=16, integer=True)
    if job.loop and frames % interpolate:
        raise ZoomdreamError(f"a loop of {frames} frames cannot be cut into steps of --interpolate {interpolate} "
                             f"(give --frames a multiple of {interpolate})")
    if job.loop and frames < 2 * interpolate:
        raise ZoomdreamError(f"a loop needs at least {2 * interpolate} frames here (raise --frames)")
    still = DreamSettings()  # frame 0 gets the still image's octaves and steps
    first = dream_settings(still.octaves, job.octave_scale, still.steps, 0.0, job.max_loss)
    later = dream_settings(job.octaves, job.octave_scale, 0, 0.0, job.max_loss)
    return ZoomSettings(
        start=start, size=size, max_size=max_size, frames=frames,
        noise_scale=number(job.noise_scale, "noise_scale", low=0, high=1),
        fps=fps, motion=motion, center=parse_center(job.center, size),
        steps=steps, step_size=step_size, layers=layers, color_match=number(job.color_match, "color_match", low=0,
                                                                            high=1),
        loop=job.loop, loop_frames=min(72, max(interpolate, frames * 3 // 4)), interpolate=interpolate,
        first=first, later=later, engine=resolve_engine(job, keyframed=True), seed=seed, audio=track)


def check_frame(motion, steps, step_size, t: int, size) -> None:
    check_motion({name: s.at(t) for name, s in motion.items()}, t, size)
    check_dream_schedules(steps, step_size, t)


def start_image(s: ZoomSettings, rng: np.random.Generator) -> np.ndarray:
    """Frame 0 before its dream, [-1, 1]: the input image (even-sized), or seeded noise around mid-grey."""
    if s.start is None:
        w, h = s.size
        noise = rng.random((h, w, 3), dtype=np.float32)  # float32 from the start: no float64 copy
        return (noise * np.float32(2 * s.noise_scale) - np.float32(s.noise_scale)).astype(np.float32)
    img = read_start(str(s.start), s.max_size)
    return to_unit(img[: s.size[1], : s.size[0]])


def camera_path(s: ZoomSettings, t0: int, t1: int) -> np.ndarray:
    """The 3x3 camera map from frame t0 to frame t1: each frame's motion in turn (wrapping in a loop)."""
    w, h = s.size
    matrix = np.eye(3)
    for t in range(t0 + 1, t1 + 1):
        values = {k: m.at(t % s.frames if s.loop else t) for k, m in s.motion.items()}
        check_motion(values, t, s.size)  # every frame's motion, dreamed or made between
        matrix = as_3x3(transform_matrix(w, h, **values, center=s.center)) @ matrix
    return matrix


def camera_preview(s: ZoomSettings, frames: int) -> Iterator[np.ndarray]:
    """The first ``frames`` frames with the camera's motion and no dream: the start moved frame by frame as
    the render will move it, in a fraction of a second instead of minutes (the studio's motion preview)."""
    image = start_image(s, np.random.default_rng(s.seed))
    for t in range(min(frames, s.frames)):
        if t > 0:
            image = warp_affine(image, camera_path(s, t - 1, t))
        yield to_uint8(image)


class Source(DreamsEveryNth, LoopSource):
    """Frame t is frame t - 1 moved by the motion of frame t and dreamed again. With ``interpolate`` n, only
    every nth frame is dreamed (moved by the motion of n frames) and the frames between are both dreamed
    neighbours carried along the known camera path and blended. With ``loop``, the motion wraps (frame
    ``frames`` is frame 0), frame 0 is the still's dream after a warm-up along the path (``warm_up``), holding
    itself nested where the path goes (``nested``), and the last frames are pulled toward frame 0 as the path
    will show it, so the video plays on into its start without a seam."""

    needs_previous = True

    def __init__(self, settings: ZoomSettings, model: LoadedModel):
        self.settings = settings
        self.audio = settings.audio.writer_options() if settings.audio else {}
        self.fps, self.total, self.step = settings.fps, settings.frames, settings.interpolate
        layers = settings.layers or parse_text_schedule(model.backbone.default_layers)
        terms, self.weights_at = layer_blend(layers)
        self.dreamer = build_dreamer(settings.engine, model, terms)
        self.reference = None  # frame 0's colour statistics, taken from frame 0 when first needed
        self.closing = None  # frame 0 as the frame before the wrap must show it (see loop_target)
        self.growth = None  # the log of the closing span's linear zoom (see share)
        self.pair = None  # (first, its frame, the next dreamed frame): the pair the frames between come from
        self.end = settings.frames if settings.loop else settings.frames - 1  # the last dreamed frame's index
        self.on_device = backend.has_accelerator()  # warp and colours where the dream is (frames' twins)
        self.held = None  # (the last frame made on the device, as kept, and its tensor there)

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        s = self.settings
        if t == 0:
            dreamed = self.dreamer.dream(start_image(s, rng), replace(s.first, step_size=s.step_size.at(0)),
                                         weights=self.weights_at(0), rng=rng)
            self.first = self.warm_up(to_uint8(dreamed), rng) if s.loop else to_uint8(dreamed)
            return self.first
        if self.step == 1:
            return self.dreamed(t - 1, previous, t, rng)
        first = last_dreamed(t, self.step)
        if self.pair is None or self.pair[0] != first:
            self.pair = (first, previous, self.key(first, previous))
        first, before, after = self.pair
        return after if t == self.next_key(first) else self.between(t, before, after)

    def keys(self) -> list[int]:
        """The dreamed frames in chain order, each made from the one before by ``key``: frame 0, every nth
        frame, and the path's end (the last frame; in a loop, frame ``frames``, which is frame 0 again)."""
        return sorted({*range(0, self.end, self.step), self.end})

    def next_key(self, first: int) -> int:
        return min(first + self.step, self.end)

    def key(self, first: int, image: np.ndarray) -> np.ndarray:
        """The dreamed frame after dreamed frame ``first`` (``image``), with an RNG of its own: a resume, or
        another process, dreams it the same."""
        s = self.settings
        last = self.next_key(first)
        rng = np.random.default_rng([s.seed, last])
        return self.first if last == s.frames else self.dreamed(first, image, last, rng)

    def between(self, t: int, before: np.ndarray, after: np.ndarray) -> np.ndarray:
        """In-between frame t from the dreamed frames around it (``key``) and the camera path alone, so any
        process that holds those two (and frame 0, in a loop) makes it the same."""
        first = last_dreamed(t, self.step)
        last = self.next_key(first)
        made = between_affine(before, after, (t - first) / (last - first), self.path(first, t), self.path(t, last))
        if last == self.settings.frames:  # across the wrap: toward frame 0 by its time (all of it: 1.75x its kind)
            made = to_uint8(self.close_loop(to_unit(made), t, weight=(t - first) / (last - first)))
        return made

    def dreamed(self, t0: int, image: np.ndarray, t: int, rng: np.random.Generator, *,
                reference: tuple[np.ndarray, np.ndarray] | None = None, pull: bool = True) -> np.ndarray:
        """Frame t, dreamed from frame t0 moved along the camera path between them, its colours matched to
        ``reference`` (frame 0's by default) and, with ``pull``, a loop's last frames pulled toward frame 0."""
        s = self.settings
        u = t % s.frames  # schedules are periodic in a loop; elsewhere t < frames
        check_frame(s.motion, s.steps, s.step_size, u, s.size)
        settings = replace(s.later, steps=max(0, round(s.steps.at(u))), step_size=s.step_size.at(u))
        if reference is None:
            if self.reference is None:  # from frame 0 as kept, so a resumed run matches exactly
                self.reference = stats(to_unit(self.first))
            reference = self.reference
        weight = self.pull(t) if pull else 0.0
        if self.on_device and weight <= 0:  # a loop's closing pull stays on the CPU (a few frames)
            return self.dreamed_on_device(image, self.path(t0, t), settings, self.weights_at(u), rng, reference)
        moved = warp_evenly(to_unit(image), self.path(t0, t))
        dreamed = self.dreamer.dream(moved, settings, weights=self.weights_at(u), rng=rng)
        matched = color_match(dreamed, reference, s.color_match)
        return to_uint8(self.close_loop(matched, t, weight=weight))

    def dreamed_on_device(self, image: np.ndarray, matrix: np.ndarray, settings: DreamSettings,
                          weights: np.ndarray, rng: np.random.Generator, reference) -> np.ndarray:
        """``dreamed`` with the warp and colour match on the device: the frame crosses to it only when it was
        not made there, and comes back once, as the uint8 frame to keep."""
        held = self.held[1] if self.held is not None and self.held[0] is image else levels.to_device(image)
        moved = warp_evenly_on_device(held, matrix)
        dreamed = self.dreamer.dream(moved, settings, weights=weights, rng=rng, on_device=True)
        matched = color_match_on_device(dreamed, reference, self.settings.color_match)
        frame, kept = levels.to_host(matched)
        self.held = (frame, kept)
        return frame

    def warm_up(self, still: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A loop's frame 0: the still's dream carried WARM_UP frames along the loop's own path into frame 0,
        dreamed as the loop dreams (every nth frame with --interpolate n). The still's dream has far finer
        texture than the zoom keeps (it settles over about ten frames); a loop that closed onto it would morph
        into that texture and out again at every wrap, and its seam would carry it. Then ``nested``."""
        s = self.settings
        reference = stats(to_unit(still))
        hops = -(-WARM_UP // self.step)
        image = still
        for t in range(s.frames - hops * self.step, s.frames, self.step):
            image = self.dreamed(t, image, t + self.step, rng, reference=reference, pull=False)
        return self.nested(image)

    def nested(self, frame: np.ndarray) -> np.ndarray:
        """Frame 0 nested in its centre where the camera shows it a loop later, on inward to 1/NESTED of its size:
        the zoom flies into what the loop closes onto (short loops morphed shapes into it, steps 8x a free one)."""
        back = np.linalg.inv(self.path(0, self.settings.frames))
        scale = abs(np.linalg.det(back[:2, :2])) ** 0.5
        if scale > 0.95:  # a loop that zooms out or barely zooms in has no room inside for itself
            return frame
        image = outer = to_unit(frame)
        mask, sigma = self.region(back)[..., None], 0.5 * (scale ** -2 - 1) ** 0.5  # sigma: shrunk without aliasing
        texture = outer - cv2.GaussianBlur(outer, (0, 0), 0.5 / scale)  # what the copy is too small to hold
        for _ in range(int(np.log(NESTED) / -np.log(scale)) + 1):
            image = outer + mask * (warp_affine(cv2.GaussianBlur(image, (0, 0), sigma), back) + texture - outer)
        return to_uint8(image)

    def region(self, matrix: np.ndarray) -> np.ndarray:
        """The feathered mask of where a frame lies once ``matrix`` carries it: soft outside it only."""
        inside = warp_affine(np.ones(self.settings.size[::-1], np.float32), matrix, reflect=False)
        feather = max(3, round(0.04 * max(self.settings.size))) | 1
        grown = cv2.dilate(inside, np.ones((feather, feather), np.uint8))
        return np.maximum(inside, cv2.GaussianBlur(grown, (2 * feather + 1, 2 * feather + 1), 0))

    def path(self, t0: int, t1: int) -> np.ndarray:
        return camera_path(self.settings, t0, t1)

    def pull(self, t: int) -> float:
        """How far dreamed frame t is pulled toward its loop target (0 outside a loop's closing span).

        Over the span frame 0's share of the picture should follow ``share``, to 1 at the last dreamed frame.
        The dreamed frame before carries its share along the path (the targets move as the loop moves), less
        what the dream rewrites of it, so frame t is pulled by the increment that brings the share back onto
        the curve. Pulling every frame by the whole ramp compounded and put most of the change early, in steps
        up to 9 times a normal one; without the dream's part the shapes morphed late, in the span's last
        frames."""
        s = self.settings
        start = s.frames - self.step - s.loop_frames  # the last dreamed frame ends the span
        if not s.loop or t <= start:
            return 0.0
        before = (1 - REWRITTEN) * self.share(t - self.step)
        now = self.share(t)
        return (now - before) / (1.0 - before)

    def share(self, t: int) -> float:
        """Frame 0's share of the picture at frame t of a loop's closing span: rising from 0 to 1, fastest
        while frame 0 still looks small. A change over an area A costs a step about A times its square, so
        the steps are even when the share rises as one over the square root of the area frame 0 covers then
        (as the zoom brings it closer): ``(1 - exp(-g x)) / (1 - exp(-g))`` over the span's fraction x, with g
        the log of the span's linear zoom. With an even rise over the last half of the loop the widest steps
        were far wider than a free one, the dream morphing back into frame 0; with this rise over the last three
        quarters they are about as wide: the camera flies into frame 0 (``scripts/bench_loops.py``; figures:
        the Benchmarks page)."""
        s = self.settings
        start = s.frames - self.step - s.loop_frames
        x = min(1.0, max(0.0, (t - start) / s.loop_frames))
        if self.growth is None:
            self.growth = 0.5 * float(np.log(abs(np.linalg.det(self.path(start, s.frames)[:2, :2]))))
        g = self.growth
        return x if abs(g) < 1e-3 else float((1.0 - np.exp(-g * x)) / (1.0 - np.exp(-g)))

    def close_loop(self, image: np.ndarray, t: int, weight: float) -> np.ndarray:
        """Pull frame t ([-1, 1]) by ``weight`` toward frame 0 as the camera path will bring it there, under a
        feathered mask of where frame 0 lies."""
        if weight <= 0:
            return image
        image = np.clip(image, -1.0, 1.0)  # colour-matched values past the range, as the kept frame has them
        target, inside = self.loop_target(t)
        mask = (weight * inside)[..., None]
        return (image + mask * (target - image)).astype(np.float32)

    def loop_target(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame 0 as the camera path will show it at frame t ([-1, 1]), and the feathered mask of where it
        lies.

        The frame before the wrap gets frame 0 carried back one step and back-projected once, so that carried
        ahead it is frame 0 rather than a blur of it (one correction restores what one resampling blurs; more
        sharpen it past frame 0's own texture into pixel speckle). Every earlier target is that frame carried
        back along the path, so the targets move as the loop moves. (Back-projecting frame 0 through all the
        steps still to come sharpened the early targets into noise, and consecutive targets disagreed.)"""
        s = self.settings
        if self.closing is None:
            ahead = self.path(s.frames - 1, s.frames)
            back = np.linalg.inv(ahead)
            first = to_unit(self.first)
            target = warp_affine(first, back)
            self.closing = target + warp_affine(first - warp_affine(target, ahead), back)
        target = warp_affine(self.closing, np.linalg.inv(self.path(t, s.frames - 1)))
        return target, self.region(np.linalg.inv(self.path(t, s.frames)))
