"""The studio's Live tab apart from the web page: a visitor's webcam frames dreamed one by one by the live frame
source (``loops.live.Source``: each frame carried along the optical flow from the last output, as ``zoomdream
live`` does), one visitor at a time (the engine is one: the others are told they wait, and one who leaves frees
it), the controls that act on the next frame, and the fps and latency the tab shows. Nothing here imports
Gradio."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import replace
from typing import Callable

import numpy as np

from zoomdream.config import make_job
from zoomdream.errors import error_line
from zoomdream.live.controls import Controls
from zoomdream.studio.session import Studio

PAGE_SIDE = 256  # the dream's longest side: 256x144 from a 16:9 camera (its figures on 2 CPU cores: docs/live.md)
IDLE_S = 3.0  # a dreaming visitor whose frames stopped this long ago has left: the next visitor may take over
WAITING = "waiting: another visitor is dreaming (one engine); yours starts when they stop"
RENDERING = "waiting: a render is running in the studio (one engine); yours starts when it ends"


class LiveDreams:
    """The Live tab's engine: ``frame(visitor, image)`` dreams the visitor's frame when the engine is theirs (the
    first to send a frame takes it, holding the studio's one-render lock so no render runs beside it) and
    otherwise says why they wait; ``stop(visitor)`` frees it. ``controls`` are the live controls (``control``
    sets one, as OSC and presets do for ``zoomdream live``), read at every frame. ``latest`` is the last (camera
    frame at the dream's size, dream) pair, for the page's tests."""

    def __init__(self, studio: Studio, settings: dict | None = None, clock: Callable[[], float] = time.monotonic):
        self.studio, self.clock = studio, clock
        self.job = make_job({"command": "live", **(settings or {})})  # its machine pinned when a model is needed
        self.pinned = False
        self.controls = Controls(self.job)
        self.lock = threading.Lock()  # the owner and the figures
        self.owner: str | None = None
        self.seen = 0.0  # when the owner's last frame came
        self.dreaming: str | None = None  # whose frame is being dreamed (never stale: a first frame compiles)
        self.stopped: set[str] = set()  # visitors who pressed Stop: a frame of theirs still on its way is dropped
        self.source = None  # the live frame source of the owner's stream
        self.made = 0
        self.times: deque = deque(maxlen=30)  # when each recent dream was handed back
        self.latencies: deque = deque(maxlen=30)  # each one's seconds from its camera frame's arrival
        self.latest: tuple[np.ndarray, np.ndarray] | None = None

    def frame(self, visitor: str, image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        """The dream of ``image`` and the figures line, or None and why this visitor waits (no line: they
        stopped, and the page keeps the line that said so)."""
        arrived = self.clock()
        if visitor in self.stopped:
            return None, None
        waiting = self._claim(visitor, arrived)
        if waiting:
            return None, waiting
        try:
            source = self._source(image)
            camera = _fit(image, source.settings.size)
            dream = source.dreamed(source.prepare(camera, self.made, arrived))
        except Exception as e:  # stopped, the engine freed (renders may run), and the page says why in one line
            self.stop(visitor)
            return None, error_line(e)
        finally:
            with self.lock:
                if self.dreaming == visitor:
                    self.dreaming = None
        done = self.clock()
        with self.lock:
            if self.owner != visitor:  # stopped while this frame was dreamed
                return None, None
            self.seen = done
            self.made += 1
            self.times.append(done)
            self.latencies.append(done - arrived)
            self.latest = (camera, dream)
            return dream, self.figures()

    def figures(self) -> str:
        """Frames made, the rate over the recent ones, and the median time from a camera frame's arrival to its
        dream leaving (the server's part of the latency; the network's and the browser's come on top)."""
        fps = (len(self.times) - 1) / (self.times[-1] - self.times[0]) if len(self.times) > 1 else 0.0
        latency = 1000 * float(np.median(self.latencies)) if self.latencies else 0.0
        return f"dreaming: frame {self.made} · {fps:.1f} fps · latency {latency:.0f} ms"

    def _claim(self, visitor: str, now: float) -> str | None:
        """None when the engine is (now) ``visitor``'s; else why they wait."""
        with self.lock:
            if self.owner == visitor:
                self.seen, self.dreaming = now, visitor
                return None
            if self.owner is not None and (self.dreaming == self.owner or now - self.seen < IDLE_S):
                return WAITING
            if self.owner is None and not self.studio.busy.acquire(blocking=False):
                return RENDERING
            self.studio.live = True
            self.owner, self.seen, self.source, self.made = visitor, now, None, 0  # a left visitor's lock passes on
            self.dreaming = visitor
            self.times.clear()
            self.latencies.clear()
            return None

    def _source(self, image: np.ndarray):
        """The owner's live frame source, made at their first frame (sized to their camera's aspect) with the
        studio's cached model. It keeps the governor's level 0: the page has no governor (it would undo the steps
        slider; the browser already drops the camera frames the dream had no time for)."""
        from zoomdream.loops.live import Source, fit, resolve

        if self.source is None:
            w, h = fit(image.shape[1], image.shape[0], PAGE_SIDE)
            self.job = replace(self.job, size=f"{w}x{h}")
            self.source = Source(resolve(self.job, page=True), self.model(), self.controls)
        return self.source

    def control(self, name: str, value) -> str | None:
        """Set the live setting ``name`` from the next frame on; a bad value raises ZoomdreamError and changes
        nothing. None: it already has that value (a control moved to show a loaded look)."""
        if value == self.controls.shown(name):
            return None
        self.controls.set(name, value)
        return f"{name.replace('_', ' ')} {value} from the next frame"

    def model(self):
        """The live job's model from the studio's cache (loaded once per studio process), its precision and
        tile pinned to this machine the first time."""
        from zoomdream.runner import pin_machine

        if not self.pinned:
            self.job, self.pinned = pin_machine(self.job), True
        return self.studio.model(self.job)

    def start(self, visitor: str) -> None:
        """``visitor`` pressed Start: their frames are dreamed (or wait their turn) again."""
        with self.lock:
            self.stopped.discard(visitor)

    def stop(self, visitor: str | None = None) -> str:
        """Free the engine if it is ``visitor``'s (Stop, or their page closed), or whoever's (None: the studio
        closes); ``visitor``'s frames still on their way are dropped until they press Start again."""
        with self.lock:
            if visitor is not None:
                self.stopped.add(visitor)
            if self.owner is None or visitor is not None and self.owner != visitor:
                return "stopped"
            self.owner, self.source = None, None
            self.studio.live = False
            self.studio.busy.release()
            return f"stopped after {self.made} frame{'s' * (self.made != 1)}"


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The camera frame at the dream's size (cropped to its aspect, centred, as a live source is)."""
    from zoomdream.loops.live import _cover

    return _cover(np.ascontiguousarray(image[..., :3]), *size)
