"""How frames are made: one still, the infinite-zoom feedback loop, and video stylization.

Loops take a resolved ``Job``, build the engine once, and drive it frame by frame; they own progress bars,
outputs and resume state, and nothing below them knows about files or frames.
"""
from __future__ import annotations

import json
import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from zoomdream import io, precision
from zoomdream.ascent import Dreamer, DreamSettings, to_uint8, to_unit
from zoomdream.config import COMMAND_DEFAULTS, Job, save_job
from zoomdream.errors import ZoomdreamError
from zoomdream.flow import coherent_init, motion_between, temporal_blend
from zoomdream.models import LoadedModel, load_model
from zoomdream.motion import parse_schedule, parse_text_schedule, transform_frame
from zoomdream.objective import LayerTerm, guide_features, make_objective, parse_layers


def fit_max_size(img: np.ndarray, max_size: int | None) -> np.ndarray:
    """Downscale so the longest side is at most ``max_size`` (never upscale)."""
    if not max_size or max(img.shape[:2]) <= max_size:
        return img
    scale = max_size / max(img.shape[:2])
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def constant(value: int | float | str, name: str) -> float:
    """A setting that only zoom may keyframe, read as one number for stills and video."""
    try:
        return float(value)
    except ValueError:
        raise ZoomdreamError(f"--{name.replace('_', '-')} '{value}' must be a number here "
                             f"(keyframes are for zoom)") from None


def dream_settings(job: Job, steps: float | None = None, step_size: float | None = None,
                   octaves: int | None = None) -> DreamSettings:
    """The engine settings for one frame; without overrides, the job's (constant) values."""
    return DreamSettings(octaves=job.octaves if octaves is None else octaves, octave_scale=job.octave_scale,
                         steps=max(0, round(constant(job.steps, "steps") if steps is None else steps)),
                         step_size=constant(job.step_size, "step_size") if step_size is None else step_size,
                         max_loss=job.max_loss)


def build_dreamer(job: Job, model: LoadedModel | None = None) -> Dreamer:
    """Load the backbone and compile the engine for the job's objective (and guide image, if any)."""
    model = model or load_model(job.model, job.weights, precision.resolve(job.precision, job.model, job.weights))
    objective = make_objective(job.layers or model.backbone.default_layers, job.loss, job.tv)
    if job.guide:
        guide = to_unit(fit_max_size(io.read_image(job.guide), 512))
        objective = objective.with_guide(guide_features(model.feature_model(objective.layers), objective.layers,
                                                        guide))
    return Dreamer(model, objective, tile=job.tile)


def render_image(job: Job, progress: bool = True, model: LoadedModel | None = None) -> np.ndarray:
    """Dream one still image; writes ``job.output`` when set and returns the uint8 result."""
    if not job.input:
        raise ZoomdreamError("no input image given (zoomdream image IN.jpg -o OUT.png)")
    if job.output and Path(job.output).suffix.lower() not in io.IMAGE_EXTENSIONS:
        raise ZoomdreamError(f"cannot write '{job.output}': use one of {', '.join(io.IMAGE_EXTENSIONS)}")
    img = fit_max_size(io.read_image(job.input), job.max_size)
    settings = dream_settings(job)
    dreamer = build_dreamer(job, model=model)
    with tqdm(total=settings.octaves * settings.steps, desc="dreaming", unit="step", disable=not progress,
              dynamic_ncols=True) as bar:
        result = to_uint8(dreamer.dream(to_unit(img), settings, seed=job.seed, on_step=bar.update))
    if job.output:
        io.write_image(job.output, result)
    return result


# --------------------------------------------------------------------------------------------------------------
# Frame loops: shared output, resume and progress machinery


class FrameRender:
    """Where a loop's frames go: numbered PNGs in a work folder (the resume state), the streaming video
    writer, the preview, and the final file, which appears only when every frame is done.

    The work folder ``OUT.zoomdream/`` holds ``state.json`` (frames done, RNG state, settings hash) and the
    PNG frames (or they go to ``--frames-dir``). On resume the finished frames are fed to a fresh encoder,
    which costs seconds, and the loop continues from the last one. Keeping a frame (PNG, state, encoder)
    runs on a worker thread while the next frame is dreamed; at most one frame is in flight.
    """

    def __init__(self, job: Job, fps: float, audio: dict | None = None):
        self.job, self.fps, self.audio = job, fps, audio or {}
        self.output = Path(job.output)
        if self.output.suffix.lower() not in io.VIDEO_EXTENSIONS:
            raise ZoomdreamError(f"cannot write '{self.output}': use one of {', '.join(io.VIDEO_EXTENSIONS)}")
        self.work = self.output.with_name(self.output.name + ".zoomdream")
        self.frames_dir = Path(job.frames_dir) if job.frames_dir else self.work / "frames"
        self.state_path = self.work / "state.json"
        self.writer = None
        self.done = 0
        self.rng_state = None
        self._kept = {}  # the first and the latest frame, so the loop never waits on the disk
        self._worker = ThreadPoolExecutor(max_workers=1)
        self._pending = None

    def start(self) -> int:
        """Prepare the folders and the encoder; returns how many frames are already done."""
        if self.state_path.exists():
            if not self.job.resume:
                raise ZoomdreamError(f"an interrupted render exists in {self.work} (add --resume to continue it, "
                                     f"or delete that folder to start over)")
            state = json.loads(self.state_path.read_text())
            if state["settings"] != self.job.settings_hash():
                raise ZoomdreamError(f"cannot resume {self.work}: its settings differ from these (use the "
                                     f"settings in {self.work / 'job.toml'}, or delete the folder to start over)")
            self.done, self.rng_state = state["done"], state["rng"]
        io.make_folder(self.frames_dir)
        io.make_folder(self.work)
        save_job(self.job, self.work / "job.toml")
        self.writer = io.VideoWriter(self.output, self.fps, crf=self.job.crf, gif_fps=self.job.gif_fps,
                                     gif_width=self.job.gif_width, **self.audio)
        for t in range(self.done):
            self.writer.write(io.read_image(io.frame_path(self.frames_dir, t)))
        return self.done

    def frame(self, index: int) -> np.ndarray:
        """A finished frame: the first or the latest from memory, else (after a resume) from disk."""
        if index not in self._kept:
            self._kept[index] = io.read_image(io.frame_path(self.frames_dir, index))
        return self._kept[index]

    def last_frame(self) -> np.ndarray:
        return self.frame(self.done - 1)

    def emit(self, frame: np.ndarray, rng: np.random.Generator) -> None:
        """Hand a finished frame (and the RNG state after it) to the worker that keeps it."""
        self._kept = {i: f for i, f in self._kept.items() if i == 0}
        self._kept[self.done] = frame
        self.flush()
        self._pending = self._worker.submit(self._keep, self.done, frame, rng.bit_generator.state)
        self.done += 1

    def _keep(self, index: int, frame: np.ndarray, rng_state: dict) -> None:
        """PNG first (atomic), then the state that says it exists, then the encoder and the preview."""
        io.write_image(io.frame_path(self.frames_dir, index), frame)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"done": index + 1, "rng": rng_state, "settings": self.job.settings_hash()}))
        tmp.replace(self.state_path)
        self.writer.write(frame)
        if self.job.preview and (index + 1) % self.job.preview == 0:
            io.write_image(self.output.with_name(self.output.stem + ".preview.png"), frame)

    def flush(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def finish(self) -> None:
        self.flush()
        self._worker.shutdown()
        self.writer.close()
        save_job(self.job, self.output.with_name(self.output.stem + ".job.toml"))
        if self.job.frames_dir:
            self.state_path.unlink()
            (self.work / "job.toml").unlink()
            self.work.rmdir()
        else:
            shutil.rmtree(self.work)

    def abort(self) -> None:
        """Keep every frame already handed over (they are the resume point), drop the partial video."""
        try:
            self.flush()
        finally:
            self._worker.shutdown()
            if self.writer is not None:
                self.writer.abort()


def restore_rng(seed: int, state: dict | None) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    if state is not None:
        rng.bit_generator.state = state
    return rng


def run_frames(render: FrameRender, total: int | None, make_frame, progress: bool) -> None:
    """Drive ``make_frame(t, rng)`` from the first frame not yet done until ``total`` frames exist or it
    returns None (the source ran out), keeping each frame as it is made."""
    done = render.start()
    rng = restore_rng(render.job.seed, render.rng_state)
    try:
        with tqdm(total=total, initial=done, desc="frames", unit="frame", disable=not progress,
                  dynamic_ncols=True) as bar:
            t = done
            while total is None or t < total:
                frame = make_frame(t, rng)
                if frame is None:
                    break
                render.emit(frame, rng)
                bar.update()
                t += 1
        render.finish()
    except BaseException:
        render.abort()
        raise


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


# --------------------------------------------------------------------------------------------------------------
# Infinite zoom


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w < 8 or h < 8:
            raise ValueError
        return w, h
    except ValueError:
        raise ZoomdreamError(f"--size '{text}' is not WIDTHxHEIGHT of at least 8x8 (e.g. 640x360)") from None


def parse_center(text: str | None) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        x, y = (float(v) for v in text.split(","))
        return x, y
    except ValueError:
        raise ZoomdreamError(f"--center '{text}' is not X,Y in pixels (e.g. 320,180)") from None


def layer_blend(spec: str | None, default: str):
    """The union objective of a keyframed layer schedule, and per frame the weight vector over its terms,
    so travelling through the network changes inputs to the compiled step, never the step itself."""

    schedule = parse_text_schedule(spec or default, name="layers")
    index: dict[tuple, int] = {}
    for _, text in schedule.keys:
        for term in parse_layers(text):
            index.setdefault((term.layer, term.channels), len(index))
    terms = tuple(LayerTerm(layer, 1.0, channels) for layer, channels in index)

    def weights_at(t: int) -> np.ndarray:
        weights = np.zeros(len(index), np.float32)
        for text, share in schedule.blend_at(t):
            for term in parse_layers(text):
                weights[index[(term.layer, term.channels)]] += share * term.weight
        return weights

    return terms, weights_at


def start_image(job: Job, rng: np.random.Generator) -> np.ndarray:
    """The zoom's first input, [-1, 1]: the input image, or seeded noise around mid-grey."""
    if job.noise:
        w, h = parse_size(job.size)
        return rng.uniform(-job.noise_scale, job.noise_scale, (h, w, 3)).astype(np.float32)
    if not job.input:
        raise ZoomdreamError("no start given: pass an input image, or --noise --size WxH")
    img = fit_max_size(io.read_image(job.input), job.max_size)
    return to_unit(img[: img.shape[0] // 2 * 2, : img.shape[1] // 2 * 2])


def resolve_machine_settings(job: Job) -> Job:
    """Pin ``precision=auto`` to what this machine picks, so the saved job reproduces the same frames."""
    return replace(job, precision=precision.resolve(job.precision, job.model, job.weights))


def render_zoom(job: Job, progress: bool = True, model: LoadedModel | None = None) -> None:
    """The feedback loop: each frame is the previous one, zoomed (moved) a little and dreamed again."""
    job = resolve_machine_settings(job)

    def schedule(text, name):
        return parse_schedule(text, name=f"--{name}", interpolation=job.interpolation)

    motion = {name: schedule(getattr(job, name), name) for name in ("zoom", "angle", "tx", "ty")}
    steps, step_size = schedule(job.steps, "steps"), schedule(job.step_size, "step-size")
    center = parse_center(job.center)
    if job.noise:
        parse_size(job.size)
    render = FrameRender(job, job.fps)
    model = model or load_model(job.model, job.weights, job.precision)
    terms, weights_at = layer_blend(job.layers, model.backbone.default_layers)
    dreamer = Dreamer(model, make_objective(terms, job.loss, job.tv), tile=job.tile)
    reference = {}

    def make_frame(t: int, rng: np.random.Generator) -> np.ndarray:
        if t == 0:
            image = start_image(job, rng)
            settings = dream_settings(job, step_size=step_size.at(0), **COMMAND_DEFAULTS["image"])
        else:
            previous = to_unit(render.last_frame())
            image = transform_frame(previous, **{k: s.at(t) for k, s in motion.items()}, center=center)
            settings = dream_settings(job, steps=steps.at(t), step_size=step_size.at(t))
        dreamed = dreamer.dream(image, settings, weights=weights_at(t), rng=rng)
        if t == 0:
            return to_uint8(dreamed)
        if "stats" not in reference:  # from the saved first frame, so a resumed run matches exactly
            reference["stats"] = stats(to_unit(render.frame(0)))
        return to_uint8(color_match(dreamed, reference["stats"], job.color_match))

    run_frames(render, job.frames, make_frame, progress)


# --------------------------------------------------------------------------------------------------------------
# Video stylization


def render_video(job: Job, progress: bool = True, model: LoadedModel | None = None) -> None:
    """Dream a clip frame by frame; each frame starts from the previous dream warped by the source's
    optical flow (occlusions dreamed afresh), so the dream moves with the scene instead of flickering."""
    if not job.input:
        raise ZoomdreamError("no input video given (zoomdream video IN.mp4 -o OUT.mp4)")
    job = resolve_machine_settings(job)
    info = io.probe_video(job.input)
    settings = dream_settings(job)
    audio = dict(audio_from=job.input, audio_start=job.start, audio_duration=job.duration) if info.has_audio else {}
    render = FrameRender(job, info.fps / job.every, audio)
    dreamer = build_dreamer(job, model=model)
    sources = io.read_video(job.input, start=job.start, duration=job.duration, every=job.every,
                            max_size=job.max_size)
    previous = {}

    def make_frame(t: int, rng: np.random.Generator) -> np.ndarray | None:
        if t > 0 and "source" not in previous:  # resuming at t: skip to the source of frame t - 1
            for _ in range(t - 1):
                next(sources, None)
            previous["source"] = next(sources, None)
        source = next(sources, None)
        if source is None:
            return None
        if t == 0:
            init, motion = source, None
        else:
            motion = None if job.flow == "none" else motion_between(previous["source"], source, method=job.flow)
            init = coherent_init(render.last_frame(), previous["source"], source, blend=job.blend,
                                 method=job.flow, motion=motion)
        previous["source"] = source
        # The same roll sequence every frame: similar inputs then get similar dream detail, not fresh jitter.
        dreamed = to_uint8(dreamer.dream(to_unit(init), settings, seed=job.seed))
        if motion is not None and job.smooth:
            dreamed = temporal_blend(dreamed, render.last_frame(), motion, job.smooth)
        return dreamed

    try:
        run_frames(render, expected_frames(info, job), make_frame, progress)
    finally:
        sources.close()


def expected_frames(info, job: Job) -> int | None:
    """Frames the selected range should yield, for the progress bar's ETA (None when unknown)."""
    if info.duration is None:
        return None
    seconds = max(0.0, info.duration - job.start)
    if job.duration is not None:
        seconds = min(seconds, job.duration)
    return math.ceil(round(seconds * info.fps, 3) / job.every)
