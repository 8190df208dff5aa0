"""One shared model for the whole suite: EfficientNet-Lite0 with its real ImageNet weights, loaded once."""
import os
import re
import signal
import subprocess
import tempfile
import time
from fractions import Fraction

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="zoomdream-test-cache-")  # --precision auto times afresh

import numpy as np
import pytest

# Tests send Ctrl-C (SIGINT) to themselves and to the commands they start. A suite started as a background job
# (`.ci/run &`) inherits SIGINT ignored, as POSIX shells start `cmd &`, and Python then never raises
# KeyboardInterrupt (a studio test waited for ever): handle it as an interactive Python does, children too.
signal.signal(signal.SIGINT, signal.default_int_handler)


def wait_for(condition, seconds: float = 240.0, what: str = "the condition") -> None:
    """Poll ``condition`` until it holds: tests wait for the event they need (a port closed, a file present),
    never for a fixed time. ``seconds`` is a bound, not a timing: it only ends a hung test."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


def free_port() -> int:
    """A local port nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str) -> bool:
    """Whether a server answers at ``url`` (any HTTP answer; a refused or failed connection is False)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def job_at(tmp_path, name: str, values: dict, **overrides):
    """A job writing ``tmp_path / name``: a test file's own defaults (``values``) with ``overrides``."""
    from zoomdream.config import make_job

    return make_job({**values, "output": str(tmp_path / name), **overrides})


def decoded(path) -> np.ndarray:
    """Every frame of a video as zoomdream's own reader gives them."""
    from zoomdream import media

    return np.stack(list(media.read_video(path)))


@pytest.fixture(scope="session")
def lite0():
    from zoomdream.models import load_model

    return load_model("efficientnet-lite0", precision="float32")


@pytest.fixture(scope="session")
def dreamer(lite0):
    """A compiled engine on a mid-depth layer pair, tiles of 64 px so small images still tile."""
    from zoomdream.ascent import Dreamer
    from zoomdream.objective import make_objective

    return Dreamer(lite0, make_objective("block5:1,block8:1"), tile=64)


@pytest.fixture
def photo():
    """The scikit-image cat photo (CC0), shrunk to 96x64 and scaled to the engine's [-1, 1]."""
    import cv2
    import imageio.v3 as iio

    img = iio.imread(os.path.join(os.path.dirname(__file__), "..", "samples", "chelsea.png"))
    return cv2.resize(img, (96, 64), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1.0


from zoomdream.sinks import Sink


class Interrupt(Sink):
    """A sink that raises KeyboardInterrupt (like Ctrl-C) once ``frames`` frames are kept."""

    def __init__(self, frames: int):
        self.frames = frames

    def write(self, index, frame):
        if index + 1 == self.frames:
            raise KeyboardInterrupt


@pytest.fixture
def interrupt_after():
    """``interrupt_after(n)``: a sink to pass to a render that stops it like Ctrl-C once n frames are kept."""
    return Interrupt


@pytest.fixture(scope="session")
def studio(lite0, tmp_path_factory):
    """The studio's web app on a free local port, using the shared model: (app, its URL)."""
    from zoomdream.studio import serve

    port = free_port()
    app = serve(tmp_path_factory.mktemp("studio"), port=port, block=False,
                models={("efficientnet-lite0", None, "float32"): lite0})
    yield app, f"http://127.0.0.1:{port}/"
    app.close()


def timing(path) -> tuple[int, set[Fraction], Fraction]:
    """The video track's packets as ffmpeg's muxer left them: how many, their durations and the track's length,
    in seconds (from the decoding timestamps, which players and ffmpeg's average rate go by)."""
    from zoomdream.media.ffmpeg import ffmpeg_exe

    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f",
                          "framecrc", "-"], capture_output=True, text=True, check=True).stdout
    num, den = re.search(r"^#tb 0: (\d+)/(\d+)", out, re.M).groups()
    tick = Fraction(int(num), int(den))
    rows = [[int(v) for v in line.split(",")[1:4]] for line in out.splitlines() if line.startswith("0,")]
    return len(rows), {d * tick for _, _, d in rows}, (rows[-1][0] + rows[-1][2] - rows[0][0]) * tick


def assert_exact(path, frames: int, fps: float) -> None:
    """Packets of one frame's duration, a track of frames/fps, the header's average rate the nominal one, and
    ``read_video`` yields every frame."""
    from zoomdream import media

    rate = Fraction(fps).limit_denominator(1001)
    count, durations, length = timing(path)
    assert (count, durations) == (frames, {1 / rate}), (path, count, durations)
    assert abs(length - frames / rate) < Fraction(1, 1000), (path, float(length), frames / fps)
    info = media.probe_video(path)
    assert (info.n_frames, round(info.fps, 3)) == (frames, round(fps, 3))
    assert sum(1 for _ in media.read_video(path)) == frames
