"""The worker: a Ray actor (Ray's documented pattern for a model kept loaded per process) that loads its model
once, keeps it between jobs, and calls the runner for whole jobs, a clip's chunks and their seams and join, and
a zoom's chain of dreamed frames and the frames made between them. Frames cross machines as files: every path a
task names is on a folder all machines share."""
from __future__ import annotations

import os
from pathlib import Path

from zoomdream import media, runner
from zoomdream.config import Job
from zoomdream.loops import loop_module
from zoomdream.models import ModelCache
from zoomdream.sinks import FramesDirSink, MemorySink, PreviewSink


class Worker:
    """A Ray actor: one process, its model loaded once and kept for every job it renders. ``progress``: the
    name of the counter it reports each kept frame to, found by name so a restarted worker needs nothing kept
    for its arguments."""

    def __init__(self, threads: int, progress: str):
        import ray

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        _limit_threads(threads)
        self.progress, self.models = ray.get_actor(progress), ModelCache(keep=1)

    def pid(self) -> int:
        return os.getpid()

    def pin(self, job: Job) -> Job:
        return runner.pin_machine(job) if self._dreams(job) else job

    def render(self, key: tuple, job: Job, protected: tuple[str, ...]) -> str:
        job = self.pin(job)
        runner.render(job, progress=False, model=self._model(job), sinks=(self._counter(key),), protected=protected)
        return job.output

    def piece(self, key: tuple, job: Job, span: tuple[int, int], work: str, warmup: int,
              stream: tuple[int, int] | None) -> str:
        runner.render_piece(job, range(*span), Path(work), warmup=warmup, progress=False, model=self._model(job),
                            sinks=(self._counter(key), *self._preview(job)), stream=stream and range(*stream),
                            frames_dir=job.frames_dir and Path(job.frames_dir))
        return work

    def plan(self, job: Job) -> tuple[list[int], list[range]]:
        return runner.key_plan(job, model=self._model(job))

    def keys(self, key: tuple, job: Job, work: str) -> str:
        runner.render_keys(job, Path(work), progress=False, model=self._model(job),
                           sinks=(self._counter(key), *self._preview(job)))
        return work

    def between(self, key: tuple, job: Job, keys: str, frames: tuple[int, int], stream: str) -> str:
        runner.render_between(job, Path(keys), range(*frames), Path(stream), model=self._model(job),
                              sinks=(*self._frames_dir(job), self._counter(key)))
        return stream

    def join_segments(self, job: Job, streams: list[tuple[str, int]], protected: tuple[str, ...]) -> None:
        runner.join_segments(job, streams, model=self._model(job), protected=protected)

    def seams(self, key: tuple, job: Job, pieces: list[str], folder: str) -> None:
        runner.encode_seams(job, [Path(p) for p in pieces], model=self._model(job), folder=Path(folder),
                            sinks=self._frames_dir(job))  # the cross-faded frames: the chunks wrote the others

    def join(self, job: Job, pieces: list[str]) -> None:
        runner.join_pieces(job, [Path(p) for p in pieces], model=self._model(job))

    def _dreams(self, job: Job) -> bool:
        return getattr(loop_module(job.command), "NEEDS_MODEL", True)

    def _model(self, job: Job):
        """The job's model, loaded once per worker (a job with another model replaces it); TensorFlow starts at
        the first load, after ``_limit_threads``."""
        if not self._dreams(job):
            return None
        return self.models.get(job.model, job.weights, job.precision)

    def _frames_dir(self, job: Job) -> tuple:
        """``--frames-dir``, where the job asks for it: the frames a task makes as PNG."""
        return (FramesDirSink(media.make_folder(job.frames_dir)),) if job.frames_dir else ()

    def _preview(self, job: Job) -> tuple:
        return (PreviewSink(runner.preview_path(Path(job.output)), job.preview),) if job.preview else ()

    def _counter(self, key: tuple):
        return MemorySink(on_frame=lambda index, frame: self.progress.frame.remote(key, index))


def _limit_threads(threads: int) -> None:
    """Each worker keeps its share of the machine's cores (before TensorFlow starts in this process), except
    where that would change its frames. OpenCV's optical flow gives the same result on any number of threads,
    so it gets the share. TensorFlow's sums do not: they are split by its intra-op thread count, and a dream
    step on 1 thread differs from one on 2 in the last bits, which the dream amplifies. So each worker computes
    with the threads a local render on its machine has (TensorFlow's default: every core this process may run
    on), and a chunk equals the local render of that piece; only the inter-op threads (which order ops, not
    sums) are shared."""
    import cv2

    cv2.setNumThreads(threads)
    if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(local_threads())
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def local_threads() -> int:
    """TensorFlow's intra-op threads in a process started here: ``$TF_NUM_INTRAOP_THREADS``, else the cores
    this process may run on."""
    try:
        return int(os.environ["TF_NUM_INTRAOP_THREADS"])
    except (KeyError, ValueError):
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
