"""A pool of Ray workers and the one progress counter they share: tasks go to free workers, a task can wait for
frames another task keeps, and one progress bar counts every worker's frames. The object store carries only
jobs, file names and the counter; frames travel as files."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from zoomdream.cluster.ray_api import RETRIES, connect, failure, layout, require_ray
from zoomdream.cluster.worker import Worker
from zoomdream.errors import ZoomdreamError

POLL_S = 0.2  # how often the driver refreshes the progress bar
START_TIMEOUT_S = 300  # workers that cannot be placed on the cluster in this time are an error, not a hang


@dataclass(frozen=True)
class Task:
    """One call to run on a free worker: ``method`` of ``Worker`` with its progress key and ``args``; ``name``
    for errors."""

    key: int
    method: str
    args: tuple
    name: str
    after: tuple[int, int] | None = None  # (task key, frames): start once that task has kept that many frames


class Progress:
    """Frames finished across all workers, by run, each counted once (a retried chunk hands its kept frames on
    again). A key is (run, task)."""

    def __init__(self):
        self.seen = {}  # run -> task -> frame indices

    def frame(self, key: tuple, index: int) -> None:
        self.seen.setdefault(key[0], {}).setdefault(key[1], set()).add(index)

    def count(self, run: int) -> int:
        return sum(map(len, self.seen.get(run, {}).values()))

    def kept(self, run: int) -> dict[int, int]:
        """Frames kept so far by each task of the run."""
        return {task: len(indices) for task, indices in self.seen.get(run, {}).items()}


class Pool:
    """Ray workers and one progress counter, on a running cluster (``address``, or ``$RAY_ADDRESS``; an
    already initialised Ray is used as it is) or on a local cluster started here and stopped by ``close``.
    ``workers`` (default: one per GPU, else ``tasks`` up to one per CPU) share the CPUs out as threads."""

    def __init__(self, address: str | None = None, workers: int | None = None, tasks: int | None = None):
        ray = self.ray = require_ray()
        self.started, self.actors, self.progress, self.runs = False, [], None, 0
        self.placed: list[tuple[str, int]] = []  # (task name, worker index), in the order handed out
        try:
            self.started = connect(ray, address)
            count, cpus, gpus, threads = layout(ray, workers, tasks)
            # Workers find the counter by name: a restarted worker needs no object kept for its arguments.
            name = f"zoomdream-progress-{uuid.uuid4().hex}"
            self.progress = ray.remote(num_cpus=0)(Progress).options(name=name).remote()
            worker = ray.remote(max_restarts=RETRIES, max_task_retries=RETRIES)(Worker)
            self.actors = [worker.options(num_cpus=cpus, num_gpus=gpus).remote(threads, name) for _ in range(count)]
            try:
                self.pids = ray.get([a.pid.remote() for a in self.actors], timeout=START_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                raise ZoomdreamError(f"the cluster did not start {count} workers of {cpus:g} CPUs"
                                     f"{f' and {gpus:g} GPU' if gpus else ''} within {START_TIMEOUT_S} s "
                                     f"(ask for fewer --workers, or add machines)") from None
            self.threads = threads
        except BaseException:  # Ctrl-C too: workers started so far are stopped; re-raised
            self.close()
            raise

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, *args):
        """Run one call on the first worker and wait for it."""
        try:
            return self.ray.get(getattr(self.actors[0], method).remote(*args))
        except Exception as e:  # Ctrl-C goes on as it is
            raise failure(self.ray, e, method) from None

    def run(self, tasks: list[Task], *, total: int | None, progress: bool = True, on_progress=None,
            stop_on_error: bool = True, label: str = "frames") -> tuple[dict, list[ZoomdreamError]]:
        """Hand ``tasks`` to free workers until all are done, with one progress bar (frames, ETA) over all of
        them. Returns the results by task key and the failures (with ``stop_on_error``, the first is raised at
        once). Any exception here, Ctrl-C included, stops the workers; frames they kept stay."""
        from tqdm import tqdm

        ray = self.ray
        self.runs += 1
        queue, idle, running, results, failures = list(tasks), list(self.actors), {}, {}, []
        try:
            with tqdm(total=total, desc=f"{label} on {len(self.actors)} workers", unit="frame",
                      disable=not progress, dynamic_ncols=True) as bar:
                while queue or running:
                    self._hand_out(queue, idle, running)
                    ready, _ = ray.wait(list(running), num_returns=len(running), timeout=POLL_S)
                    for ref in ready:
                        actor, task = running.pop(ref)
                        idle.append(actor)
                        try:
                            results[task.key] = ray.get(ref)
                        except Exception as e:
                            failures.append(failure(ray, e, task.name))
                            if stop_on_error:
                                raise failures[-1] from None
                    done = ray.get(self.progress.count.remote(self.runs))
                    bar.update(done - bar.n)
                    if on_progress is not None:
                        on_progress(done, total)
        except BaseException:  # Ctrl-C too: the workers stop and keep their frames; re-raised
            self.close()
            raise
        return results, failures

    def _hand_out(self, queue: list[Task], idle: list, running: dict) -> None:
        """Start each queued task whose frames to wait for are kept on an idle worker, in the queue's order."""
        kept = self.ray.get(self.progress.kept.remote(self.runs)) if any(t.after for t in queue) else {}
        ready = [t for t in queue if t.after is None or kept.get(t.after[0], 0) >= t.after[1]]
        if not running and not ready:
            raise RuntimeError(f"{queue[0].name} waits for frames no task is making")
        for task in ready[:len(idle)]:
            queue.remove(task)
            actor = idle.pop(0)
            call = getattr(actor, task.method).remote((self.runs, task.key), *task.args)
            running[call] = (actor, task)
            self.placed.append((task.name, self.actors.index(actor)))

    def close(self) -> None:
        """Stop the workers, freeing their share of a running cluster, and a local cluster started here."""
        ray = self.ray
        if self.started and ray.is_initialized():
            ray.shutdown()  # a local cluster stops; on a running cluster, this driver's workers end with it
        else:  # the caller's Ray stays up
            for actor in [*self.actors, *([self.progress] if self.progress is not None else [])]:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception:  # already gone
                    pass
        self.actors, self.progress, self.started = [], None, False


class Borrowed:
    """A caller's pool, lent to one render and left open."""

    def __init__(self, pool: Pool):
        self.pool = pool

    def __enter__(self) -> Pool:
        return self.pool

    def __exit__(self, *exc) -> None:
        pass


def open_pool(pool: Pool | None, address: str | None, workers: int | None, tasks: int | None):
    """The caller's ``pool``, lent and left open, else a new one that closes after the render."""
    return Borrowed(pool) if pool is not None else Pool(address, workers, tasks)
