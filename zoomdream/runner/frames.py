"""The frame loop: drives a frame source into sinks, the store keeping each frame for resume, on a thread of its
own so the source is the only serial work.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Protocol

import numpy as np
from tqdm import tqdm

from zoomdream.errors import Stopped, ZoomdreamError
from zoomdream.sinks import Sink
from zoomdream.store import FrameStore, Resume


class FrameSource(Protocol):
    """A loop kind: makes frame ``t`` from typed settings and what the frames before it left.

    ``previous`` is frame ``t - 1`` (uint8), or None where the source starts afresh (frame 0, or the first
    warm-up frame of a video piece). ``carry()`` / ``restore()`` are the JSON-able state frame ``t + 1`` needs
    besides the previous frame (the zoom's colour reference), kept with each frame for resume and pieces.
    ``restart_at(t)``: on resume, where to continue when frame ``t`` needs more than frame ``t - 1`` (an
    interpolated frame needs the dreamed frame after it). ``first`` is frame 0, set by the runner where the
    source did not make it. ``loops.common.LoopSource`` gives the defaults.
    """

    fps: float
    total: int | None  # frames in all (None: until the source runs out)
    needs_previous: bool  # True: frame t > 0 cannot start afresh (a feedback chain)
    audio: dict  # the audio the output should carry: VideoWriter's audio_from, audio_start, audio_duration
    first: np.ndarray | None

    def frame(self, t: int, previous: np.ndarray | None, rng: np.random.Generator) -> np.ndarray | None: ...
    def carry(self) -> dict: ...
    def restore(self, carry: dict) -> None: ...
    def restart_at(self, t: int) -> int: ...
    def close(self) -> None: ...


def _restore_rng(seed: int, state: dict | None) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    if state is not None:
        rng.bit_generator.state = state
    return rng


KEEP_QUEUE = 4  # frames waiting to be kept at most: a slow encoder holds the source back instead of memory


def run(source: FrameSource, sinks: list[Sink], *, seed: int, span: range | None = None,
        store: FrameStore | None = None, settings: str = "", resume: bool = False, start: Resume | None = None,
        warmup: int = 0, progress: bool = True, stop: Callable[[], bool] | None = None) -> int:
    """Make the frames of ``span`` (all of the source's by default) and hand each to the store and the sinks.

    The store, when given, is the resume point (for ``settings``, the job's hash): frames it already holds are
    replayed into the sinks and the source continues after them. Otherwise ``start`` (from an earlier piece)
    or ``warmup`` frames before the span (dreamed and discarded) give the first frame what it needs. Frames
    are kept on a thread of their own (``_Keeper``) while the source makes the next ones, so the source is
    the only serial work. On any exception every kept frame stays and the sinks are aborted. ``stop``, asked
    before each frame, ends the render there the same way (``Stopped``). Returns the number of frames made.
    """
    span = span or range(0, source.total if source.total is not None else 2 ** 62)
    keeper = None
    try:
        t, previous, rng = _start(source, sinks, seed, span, store, settings, resume, start, warmup)
        keeper = _Keeper(store, sinks)
        t = _make(source, keeper, span, t, previous, rng, progress, stop)
        keeper.finish()
        if store is not None:
            store.flush()
        for sink in sinks:
            sink.close()
        return t - span.start
    except BaseException:  # Ctrl-C and Stopped too: dreamed frames kept, sinks undone; re-raised
        try:
            if keeper is not None:
                keeper.finish(raise_error=False)  # what was dreamed is kept as far as the store can
        finally:
            if store is not None:
                store.abort()
            for sink in sinks:
                sink.abort()
        raise
    finally:
        source.close()


def _start(source: FrameSource, sinks: list[Sink], seed: int, span: range, store: FrameStore | None,
           settings: str, resume: bool, start: Resume | None,
           warmup: int) -> tuple[int, np.ndarray | None, np.random.Generator]:
    """Where the render begins: the first frame to make, the frame before it and the RNG. Frames the store
    kept from an interrupted render are replayed into the sinks first."""
    resumed = store.open(settings, span, resume) if store else None
    point = resumed or start
    if point is None and span.start > 0:
        point = _warm_up(source, span.start, warmup, seed)
    t, previous = (point.next, point.previous) if point else (span.start, None)
    if point is not None and point.carry:
        source.restore(point.carry["source"])
    if point is not None and point.first is not None:
        source.first = point.first
        if store is not None and span.start > 0:
            store.keep_first(point.first)
    restart = source.restart_at(t) if resumed is not None else t
    if restart != t:  # frame t needs an earlier frame than t - 1
        t = max(restart, span.start + 1)
        previous = store.load(t - 1)
    rng = _restore_rng(seed, point.carry["rng"] if point and point.carry else None)
    for index, frame in (store.kept(span.start, t) if store else ()):  # what an interrupted render kept
        for sink in sinks:
            sink.write(index, frame)
    return t, previous, rng


def _make(source: FrameSource, keeper: _Keeper, span: range, t: int, previous: np.ndarray | None,
          rng: np.random.Generator, progress: bool, stop: Callable[[], bool] | None) -> int:
    """Make frames ``t`` on until the span or the source ends, each handed to the keeper; returns where it
    stopped."""
    total = len(span) if source.total is not None or span.stop < 2 ** 62 else getattr(source, "expected", None)
    dreamer = getattr(source, "dreamer", None)  # counts the dreams: a frame may take none, or many (a loop's 0)
    with tqdm(total=total, initial=t - span.start, desc="frames", unit="frame", disable=not progress,
              dynamic_ncols=True) as bar:
        while t < span.stop:
            _check_stop(stop)
            frame = source.frame(t, previous, rng)
            if frame is None:
                break
            carry = {"rng": rng.bit_generator.state, "source": source.carry()}
            keeper.put(t, frame, carry, restartable(source, t))
            previous, t = frame, t + 1
            if dreamer is not None:
                bar.set_postfix_str(f"{dreamer.dreams} dreams", refresh=False)
            bar.update()
        if bar.total != bar.n:  # the source ended before its estimate (a variable-rate clip), or had none
            bar.total = bar.n
            bar.refresh()
    return t


def restartable(source: FrameSource, t: int) -> bool:
    """Whether frame ``t + 1`` can start from frame ``t`` alone (not so between a zoom's in-between frames)."""
    return source.restart_at(t + 1) == t + 1


class _Keeper:
    """Keeps frames in order on a thread of its own (the store's checkpoint, then each sink) while the source
    makes the next ones. At most ``KEEP_QUEUE`` frames wait: a slow sink makes ``put`` wait, so memory stays
    bounded. An error in keeping stops keeping; it is raised in the render at its next ``put`` or ``finish``."""

    def __init__(self, store: FrameStore | None, sinks: list[Sink]):
        self.store, self.sinks = store, sinks
        self.queue: queue.Queue = queue.Queue(KEEP_QUEUE)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="zoomdream-keeper", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:  # after an error the queue is only drained, so put never blocks for good
                try:
                    _keep(self.store, self.sinks, *item)
                except BaseException as e:  # handed to the render's thread (Ctrl-C included), which raises it
                    self.error = e

    def put(self, *item) -> None:
        while True:
            self._raise()
            try:
                self.queue.put(item, timeout=0.05)
                return
            except queue.Full:
                pass

    def finish(self, raise_error: bool = True) -> None:
        """Wait until every frame given is kept."""
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        if raise_error:
            self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def _check_stop(stop: Callable[[], bool] | None) -> None:
    if stop is not None and stop():
        raise Stopped("stopped on request (resume to continue)")


def _keep(store: FrameStore | None, sinks: list[Sink], index: int, frame: np.ndarray, carry: dict,
          restartable: bool) -> None:
    ahead = [sink for sink in sinks if sink.before_store]  # lossless copies: written before the store counts
    for sink in ahead:  # the frame, so a kill between the two never leaves them to a lossy replay
        sink.write(index, frame)
    if store is not None:
        store.keep(index, frame, carry, restartable)
    for sink in sinks:
        if not sink.before_store:
            sink.write(index, frame)


def _warm_up(source: FrameSource, first: int, warmup: int, seed: int) -> Resume:
    """Dream ``warmup`` frames before ``first`` and discard them, so frame ``first`` starts from a coherent
    previous frame without the pieces before it."""
    if source.needs_previous:
        raise ZoomdreamError(f"frame {first} of this loop needs frame {first - 1}: render the piece before it "
                             f"first and start from it")
    previous, rng = None, np.random.default_rng(seed)
    for t in range(max(0, first - warmup), first):
        previous = source.frame(t, previous, rng)
    return Resume(first, previous, {"rng": rng.bit_generator.state, "source": source.carry()}, source.first)
