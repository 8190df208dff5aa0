"""The studio's session, apart from the web page: models loaded once, one render at a time on a worker thread,
the latest frame and the progress, Stop (the runner ends before its next frame and keeps what it made) and
Resume, the motion preview, the schedules plot, the layer browser's small dreams and job files loaded into a
form. Nothing here imports Gradio, so it is driven and tested as plain Python."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from zoomdream.config import Job, load_toml, make_job
from zoomdream.errors import Stopped, ZoomdreamError, error_line
from zoomdream.models import ModelCache
from zoomdream.studio.forms import FILES, FORMATS, TABS, job_from_form, keep_upload

PREVIEW_SECONDS = 4.0
STOPPING = "stopping after the frame in progress"
PREVIEWS_KEPT = 8  # the page copies each preview into Gradio's cache as it is sent; older ones go
LAYER_PREVIEW = dict(max_size=192, octaves=2, steps=10)  # the layer browser's small dream


@dataclass
class Update:
    """What the page shows while a render runs and when it ends."""

    state: str  # "running", "done", "stopped" or "error"
    message: str  # the progress line, or the result, or the one-line error
    frame: np.ndarray | None = None  # the latest frame, when a new one came since the last update
    output: Path | None = None  # the finished file
    job_file: Path | None = None  # its job.toml


class Progress:
    """Frames as the runner hands them over, and the rate and time left they imply (read from another
    thread: only whole values are swapped). ``kept``: frames a resumed render replays at once, left out of the
    rate."""

    def __init__(self, total: int | None, kept: int = 0, clock: Callable[[], float] = time.monotonic):
        self.total, self.kept, self.clock = total, kept, clock
        self.started = clock()
        self.latest: tuple[int, np.ndarray] | None = None
        self.first_new: tuple[int, float] | None = None  # the first frame this run made, and when

    @property
    def made(self) -> int:
        """Frames made or replayed so far."""
        return self.latest[0] + 1 if self.latest else 0

    def frame(self, index: int, frame: np.ndarray) -> None:
        if self.first_new is None and index >= self.kept:
            self.first_new = (index, self.clock())
        self.latest = (index, frame)

    def line(self) -> str:
        elapsed = self.clock() - self.started
        if self.latest is None:
            return f"starting ({elapsed:.0f} s: loading the model, then the first frame)"
        done = self.made
        text = f"frame {done}" + (f" of {self.total}" if self.total else "")
        first, since = self.first_new or (done, 0.0)
        if done - 1 > first:
            per_frame = (self.clock() - since) / (done - 1 - first)
            text += f" · {per_frame:.2f} s a frame"
            if self.total:
                text += f" · about {_duration(per_frame * (self.total - done))} left"
        return text + f" · {_duration(elapsed)} so far"


def _kept(work: Path) -> int:
    """How many frames a stopped render's work folder holds."""
    from zoomdream.store import read_state

    return read_state(work)["done"] if (work / "state.json").is_file() else 0


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


class Studio:
    """The state behind the page: one render at a time, models loaded once, the last stopped render.
    ``private``: only this machine reaches the page; otherwise a loaded job file may name only files in the work
    folder (its files are copied there and shown, so any file this process reads would reach a visitor)."""

    def __init__(self, workdir: str | Path, models: dict | None = None, private: bool = True):
        self.workdir, self.private = Path(workdir).resolve(), private
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.uploads = self.workdir / "inputs"
        self.models = ModelCache(models)  # already-loaded models, keyed (model, weights, precision)
        self.busy = threading.Lock()
        self.stop_requested = threading.Event()
        self.stopped: Job | None = None  # the last stopped loop render, which Resume continues
        self.layer_cache: dict[tuple, np.ndarray] = {}
        self.progress: Progress | None = None  # the latest render's
        self.previews = self.workdir / ".previews"
        self.preview_name = f"{os.getpid()}-{id(self):x}"  # this studio's previews, apart from another's
        self.preview_count = 0
        self.last_preview: tuple[np.ndarray, str] | None = None

    def preview(self, frame: np.ndarray) -> str:
        """The latest frame as a JPEG file of its own, written once and whole (renamed into place), for the page.
        Not an array: Gradio encodes an array into a file named by its content and rewrites that file in place
        whenever the same frame comes again (a render's last update repeats its last frame, a resume replays
        kept ones), while the page may be reading it: a short read, "h11 LocalProtocolError: Too little data
        for declared Content-Length" and a broken image. A file path it copies atomically into its cache."""
        from zoomdream.media import write_image

        if self.last_preview is not None and self.last_preview[0] is frame:
            return self.last_preview[1]
        self.preview_count += 1
        path = self.previews / f"{self.preview_name}-{self.preview_count:08d}.jpg"
        self.previews.mkdir(parents=True, exist_ok=True)
        write_image(path, frame)
        self.last_preview = (frame, str(path))
        (self.previews / f"{self.preview_name}-{self.preview_count - PREVIEWS_KEPT:08d}.jpg").unlink(missing_ok=True)
        return str(path)

    def model(self, job: Job):
        """The job's model, loaded on first use; ``job`` has its precision pinned."""
        return self.models.get(job.model, job.weights, job.precision)

    def new_output(self, command: str, extension: str) -> Path:
        """A fresh output name in the work folder: COMMAND-YYYYmmdd-HHMMSS[-n].EXT."""
        from zoomdream.runner import work_folder

        if extension not in FORMATS[command]:
            raise ZoomdreamError(f"cannot write {extension} for {command} (choose {', '.join(FORMATS[command])})")
        stem, n = f"{command}-{time.strftime('%Y%m%d-%H%M%S')}", 1
        path = self.workdir / f"{stem}{extension}"
        while path.exists() or work_folder(path).exists():
            n += 1
            path = self.workdir / f"{stem}-{n}{extension}"
        return path

    def job(self, command: str, values: dict[str, Any], extension: str) -> Job:
        return job_from_form(command, values, self.new_output(command, extension), self.uploads)

    def render(self, job: Job, poll: float = 0.25) -> Iterator[Update]:
        """Render ``job`` on a worker thread, yielding an Update for each new frame (at most every ``poll``
        seconds, and each second without one) and a last one with the result. One render at a time; ``stop``
        ends it before its next frame and ``resume`` continues it."""
        from zoomdream import runner
        from zoomdream.sinks import MemorySink

        if not self.busy.acquire(blocking=False):
            if not self.stop_requested.is_set():
                yield Update("error", "zoomdream: error: another render is running (stop it, or wait for it to "
                                      "end)")
                return
            yield Update("running", "waiting for the stopped render to end its frame")
            self.busy.acquire()
        worker = None
        try:
            self.stop_requested.clear()
            try:
                _, settings, _, output = runner.check_job(job)  # bad input fails here, before the model loads
                job = runner.pin_machine(job)
                model = self.model(job)
                kept = _kept(runner.work_folder(output.path)) if job.resume else 0
            except Exception as e:
                yield Update("error", error_line(e))
                return
            progress = self.progress = Progress(1 if job.command == "image" else getattr(settings, "frames", None),
                                                kept)
            outcome: list[BaseException | None] = []

            def work() -> None:
                try:
                    runner.render(job, progress=False, model=model, sinks=(MemorySink(progress.frame),),
                                  stop=self.stop_requested.is_set)
                    outcome.append(None)
                except BaseException as e:  # all of it, Ctrl-C's too, is the outcome the page shows below
                    outcome.append(e)

            worker = threading.Thread(target=work, name="zoomdream-render", daemon=True)
            worker.start()
            shown, last = None, 0.0
            while worker.is_alive():
                worker.join(poll)
                latest = progress.latest
                if latest is not None and latest[0] != shown or time.monotonic() - last > 1:
                    new = latest is not None and latest[0] != shown
                    shown, last = (latest[0] if latest else None), time.monotonic()
                    line = f"{STOPPING} · {progress.line()}" if self.stop_requested.is_set() else progress.line()
                    yield Update("running", line, latest[1] if new else None)
            yield self._outcome(job, outcome[0] if outcome else RuntimeError("the render thread vanished"),
                                output.path, progress)
        finally:
            if worker is not None and worker.is_alive():  # the page went away mid-render (its tab closed)
                self.stop_requested.set()
                threading.Thread(target=self._settle, args=(worker, job, outcome, output.path, progress),
                                 name="zoomdream-settle", daemon=True).start()
            else:
                self.busy.release()

    def _settle(self, worker: threading.Thread, job: Job, outcome: list, output: Path, progress: Progress) -> None:
        """An abandoned render: wait (off the server's event loop) for it to stop before its next frame, keep it
        for Resume, and only then free the studio for the next render."""
        try:
            worker.join()
            self._outcome(job, outcome[0] if outcome else RuntimeError("the render thread vanished"), output,
                          progress)
        finally:
            self.busy.release()

    def _outcome(self, job: Job, error: BaseException | None, output: Path, progress: Progress) -> Update:
        from zoomdream.config import save_job
        from zoomdream.runner import record_path

        frame = progress.latest[1] if progress.latest else None
        if error is None:
            if self.stopped is not None and self.stopped.output == job.output:
                self.stopped = None  # resumed to the end (another render leaves it to Resume)
            if not record_path(output).exists():  # a still from the CLI keeps none; the page offers one
                save_job(job, record_path(output))
            made = progress.made
            return Update("done", f"done: {made} frame{'s' * (made != 1)} in "
                                  f"{_duration(time.monotonic() - progress.started)}: {output.name}",
                          frame, output, record_path(output))
        if isinstance(error, (Stopped, KeyboardInterrupt)):
            if job.command == "image":
                return Update("stopped", "stopped (a still image starts over: press its Render again)", frame)
            self.stopped = job
            return Update("stopped", f"stopped after frame {progress.made}" + (f" of {progress.total}" if progress.total
                                                                       else "") + ": press Resume to continue",
                          frame)
        return Update("error", error_line(error), frame)

    def stop(self) -> str:
        self.stop_requested.set()
        return STOPPING if self.busy.locked() else "nothing is rendering"

    def resume(self) -> Iterator[Update]:
        """Continue the last stopped render from its kept frames: this session's, else the latest one kept in
        the work folder (a studio stopped by Ctrl-C mid-render and started again)."""
        job = self.stopped or self.kept_render()
        if job is None:
            yield Update("error", "zoomdream: error: nothing to resume (a stopped zoom or video render resumes)")
            return
        yield from self.render(replace(job, resume=True))

    def kept_render(self) -> Job | None:
        """The latest interrupted render in the work folder, from the job.toml its work folder keeps."""
        kept = [work for work in self.workdir.glob("*.zoomdream")
                if (work / "job.toml").is_file() and (work / "state.json").is_file()]
        for work in sorted(kept, key=lambda work: (work / "state.json").stat().st_mtime, reverse=True):
            try:
                return make_job(load_toml(work / "job.toml"))
            except ZoomdreamError:  # unreadable: try the one before
                continue
        return None

    def motion_preview(self, job: Job, seconds: float = PREVIEW_SECONDS) -> Path:
        """A few seconds of the zoom's camera path on its start, not dreamed, as an MP4 in the work folder."""
        from zoomdream.loops import zoom
        from zoomdream.sinks import EncoderSink

        settings = zoom.resolve(job)
        path = self.workdir / "motion-preview.mp4"  # each preview replaces the last (written whole, then renamed)
        with EncoderSink(path, settings.fps) as sink:
            for t, frame in enumerate(zoom.camera_preview(settings, max(2, round(seconds * settings.fps)))):
                sink.write(t, frame)
        return path

    def curves(self, job: Job):
        """The matplotlib figure of every schedule of a zoom or video job (``zoomdream curves``)."""
        from zoomdream.curves import plot, table
        from zoomdream.loops import loop_module

        settings = loop_module(job.command).resolve(job)
        columns = table(settings)
        return plot(columns, settings.fps, f"{job.command}: {len(columns['frame'])} frames at {settings.fps:g} fps")

    def layers(self, model: str, weights: str | None = None) -> list[str]:
        from zoomdream.runner import pin_machine

        return self.model(pin_machine(make_job({"model": model, "weights": weights or None}))).layers

    def try_layer(self, image: str, model: str, weights: str | None, layer: str) -> np.ndarray:
        """A small dream of one layer on ``image``, cached: layers are picked by looking, not by name."""
        from zoomdream import runner

        job = runner.pin_machine(make_job({"input": keep_upload(image, self.uploads), "model": model,
                                           "weights": weights or None, "layers": layer, **LAYER_PREVIEW}))
        key = (job.input, job.model, job.weights, job.precision, layer)
        if key not in self.layer_cache:
            if not self.busy.acquire(blocking=False):
                raise ZoomdreamError("a render is running (stop it, or wait for it to end)")
            try:
                self.layer_cache[key] = runner.render_image(job, progress=False, model=self.model(job))
            finally:
                self.busy.release()
        return self.layer_cache[key]

    def load_job(self, path: str) -> Job:
        """A job file's settings, checked as `zoomdream render` checks them; its input files are copied into
        the work folder so the page can show them."""
        job = make_job(load_toml(path))
        if job.command not in TABS:
            raise ZoomdreamError(f"the studio has no {job.command} form (render this job with `zoomdream render`)")
        kept = {}
        for name in FILES:
            value = getattr(job, name)
            if value:
                if not Path(value).is_file():
                    raise ZoomdreamError(f"the job's {name} '{value}' is not found (fix the path in the job file)")
                if not self.private and not Path(value).resolve().is_relative_to(self.workdir):
                    raise ZoomdreamError(f"the job's {name} '{value}' is outside the studio's work folder, which is "
                                         f"all a studio open to the network reads (upload the file in the form)")
                kept[name] = keep_upload(value, self.uploads)
        return replace(job, **kept)

