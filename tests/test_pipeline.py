"""The pipelined render: frames kept behind a bounded queue, the resume state kept as H.264 segments.

A kill at any moment (mid-segment, while the queue is full, between a segment's file and the state that
counts it) leaves a work folder that resumes to the uninterrupted render's frames; a failing encoder stops
with one line; a slow sink holds the source back instead of filling memory.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import decoded as frames_of, wait_for

from zoomdream import media, runner
from zoomdream.config import make_job
from zoomdream.errors import ZoomdreamError
from zoomdream.sinks import MemorySink, Sink
from zoomdream.store import SEGMENT_FRAMES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRAMES = SEGMENT_FRAMES + 16  # two segments, the second closed by the render's end
ZOOM = dict(command="zoom", noise=True, size="48x48", frames=FRAMES, octaves=1, steps=1, tile=64,
            precision="float32")

# Runs a render in a child process that SIGKILLs itself at a chosen point: `at` is a frame index reached by a
# sink (the keeper thread), with `slow` seconds of sleep per frame before it (so the queue is full), or
# "flush:N", the Nth lossless last frame written while closing a segment (its MP4 is already in place, the
# state that counts it is not).
CHILD = textwrap.dedent("""
    import json, os, signal, sys, time
    from zoomdream import media, runner, sinks
    from zoomdream.config import make_job
    values, at, slow = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    class Killer(sinks.Sink):
        def write(self, index, frame):
            time.sleep(slow)
            if str(index) == at:
                die()

    if at.startswith("flush:"):
        count, write_image = [int(at.split(":")[1])], media.write_image
        def write_image_then_die(path, frame):
            if os.path.basename(str(path)).startswith("last-"):
                count[0] -= 1
                if count[0] == 0:
                    die()
            write_image(path, frame)
        sinks.media.write_image = write_image_then_die
    runner.render(make_job(values), progress=False, sinks=(Killer(),))
""")


@pytest.fixture(scope="module")
def whole(tmp_path_factory, lite0):
    """The uninterrupted render's decoded frames."""
    out = tmp_path_factory.mktemp("whole") / "z.mp4"
    runner.render(make_job(dict(ZOOM, output=str(out))), progress=False, model=lite0)
    return frames_of(out)


def child(values: dict, at: str, slow: float = 0.0) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(values), at, str(slow)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("at, slow, kept", [
    ("5", 0.0, 0),  # inside the first segment: nothing durable yet
    (str(SEGMENT_FRAMES + 4), 0.05, SEGMENT_FRAMES),  # a sink slower than the source: the queue is full
    ("flush:1", 0.0, 0),  # the first segment's MP4 is in place, the state does not count it yet
    ("flush:2", 0.0, SEGMENT_FRAMES),  # the same at the last segment
])
def test_resume_after_sigkill_equals_the_whole_render(tmp_path, lite0, whole, at, slow, kept):
    out = tmp_path / "z.mp4"
    values = dict(ZOOM, output=str(out))
    killed = child(values, at, slow)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()
    work = runner.work_folder(out)
    state = json.loads((work / "state.json").read_text()) if (work / "state.json").exists() else {"done": 0}
    assert state["done"] == kept
    runner.render(make_job(dict(values, resume=True)), progress=False, model=lite0)
    np.testing.assert_array_equal(frames_of(out), whole)
    assert not work.exists()


def test_a_killed_encoder_stops_the_render_in_one_line_and_keeps_what_was_kept(tmp_path, lite0, whole):
    out = tmp_path / "z.mp4"
    job = make_job(dict(ZOOM, output=str(out)))

    class KillFfmpeg(Sink):  # ffmpeg encoding the second segment dies, as when killed or out of memory
        def write(self, index, frame):
            if index == SEGMENT_FRAMES + 2:
                killed = children(os.getpid())
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
                wait_for(lambda: not any(map(running, killed)), seconds=30, what="ffmpeg to die")

    from zoomdream.errors import ZoomdreamError

    with pytest.raises(ZoomdreamError) as error:
        runner.render(job, progress=False, model=lite0, sinks=(KillFfmpeg(),))
    message = str(error.value)
    assert "\n" not in message and "ffmpeg stopped" in message and "00000024.mp4" in message
    work = runner.work_folder(out)
    # the first segment closed once 3 frames followed it; those went to the second, whose encoder died, and are
    # kept losslessly for the resume to encode again
    assert json.loads((work / "state.json").read_text())["done"] == SEGMENT_FRAMES + 3
    assert len(list((work / "open").iterdir())) == 3
    assert not out.exists() and not [p for p in (work / "segments").iterdir() if p.name.startswith(".")]
    runner.render(make_job(dict(ZOOM, output=str(out), resume=True)), progress=False, model=lite0)
    np.testing.assert_array_equal(frames_of(out), whole)


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a dead child waiting to be reaped has closed its pipes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    return found


def test_a_slow_sink_holds_the_source_back(tmp_path, lite0, monkeypatch):
    from zoomdream.loops import zoom

    made, kept, ahead = [], [], []
    frame = zoom.Source.frame

    def counted(self, t, previous, rng):
        made.append(t)
        ahead.append(len(made) - len(kept))
        return frame(self, t, previous, rng)

    monkeypatch.setattr(zoom.Source, "frame", counted)

    class Slow(Sink):
        def write(self, index, frame):
            time.sleep(0.05)
            kept.append(index)

    runner.render(make_job(dict(ZOOM, frames=20, output=str(tmp_path / "z.mp4"))), progress=False, model=lite0,
                  sinks=(Slow(),))
    assert kept == list(range(20))
    assert max(ahead) <= runner.KEEP_QUEUE + 2  # queued, being kept, being made: never the whole render


def test_frames_dir_keeps_every_frame_as_png_and_the_work_folder_no_png(tmp_path, lite0, whole):
    out, frames = tmp_path / "z.mp4", tmp_path / "frames"
    seen = []

    class Peek(Sink):
        def write(self, index, frame):
            if index == FRAMES - 1:
                seen.extend(p.name for p in runner.work_folder(out).rglob("*"))

    runner.render(make_job(dict(ZOOM, output=str(out), frames_dir=str(frames))), progress=False, model=lite0,
                  sinks=(Peek(),))
    assert len(media.list_frames(frames)) == FRAMES
    assert sum(name.endswith(".png") for name in seen) <= 2  # frame 0 and the last kept frame, lossless
    assert any(name.endswith(".mp4") for name in seen)
    np.testing.assert_array_equal(frames_of(out), whole)


def test_device_warp_and_colours_match_the_cpu_ones():
    from zoomdream.frames.colour import color_match, color_match_on_device, stats
    from zoomdream.frames.levels import to_device, to_host, to_uint8, to_unit
    from zoomdream.frames.warp import as_3x3, transform_matrix, warp_evenly, warp_evenly_on_device

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    matrix = as_3x3(transform_matrix(56, 40, zoom=1.05, angle=3.0, tx=1.5, ty=-2.0, center=None))
    cpu = warp_evenly(to_unit(frame), matrix)
    moved = warp_evenly_on_device(to_device(frame), matrix)
    on_device = np.asarray(moved)
    np.testing.assert_allclose(on_device[4:-4, 4:-4], cpu[4:-4, 4:-4], atol=1e-4)  # borders mirror differently
    reference = stats(to_unit(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
    kept, held = to_host(color_match_on_device(moved, reference, 0.7))
    expected = to_uint8(color_match(on_device, reference, 0.7))
    assert kept.dtype == np.uint8 and np.abs(kept.astype(int) - expected).max() <= 1
    np.testing.assert_array_equal(np.asarray(held), np.asarray(to_device(kept)))  # what a resume reads
    np.testing.assert_allclose(np.asarray(held), to_unit(kept), atol=1e-6)


def test_a_zoom_on_an_accelerator_keeps_its_frames_on_the_device(tmp_path, lite0, monkeypatch):
    from zoomdream import backend
    from zoomdream.frames import levels

    def frames(name):
        kept = MemorySink()
        runner.render(make_job(dict(ZOOM, frames=12, output=str(tmp_path / name))), progress=False, model=lite0,
                      sinks=(kept,))
        return np.stack([kept.frames[i] for i in range(12)]).astype(int)

    on_cpu = frames("cpu.mp4")
    monkeypatch.setattr(backend, "has_accelerator", lambda: True)  # the device path, run here by Keras ops
    uploads = []
    to_device = levels.to_device
    monkeypatch.setattr(levels, "to_device",
                        lambda frame: (uploads.append(1) if isinstance(frame, np.ndarray) else 0) or to_device(frame))
    differ = np.abs(frames("device.mp4") - on_cpu).mean(axis=(1, 2, 3))
    assert len(uploads) == 1  # frame 0 goes over once; every later frame is made there
    assert differ[0] == 0 and differ[1] < 1.0  # the same zoom, to rounding and the mirrored border...
    assert differ.max() < 10  # ...which the feedback carries on, at 48x48 a large part of the frame


@pytest.mark.parametrize("interpolate", [1, 3])
def test_flow_computed_ahead_on_threads_gives_the_same_video(tmp_path, lite0, interpolate):
    """The source's flow (with --interpolate 3: each key's, and each in-between's to both keys) computed ahead
    on two threads gives the frames of the flow computed in line."""
    clip = os.path.join(ROOT, "tests", "data", "example.mp4")
    videos = []
    for workers in (0, 2):
        out = tmp_path / f"v{workers}.mp4"
        job = make_job(dict(command="video", input=clip, max_size=48, duration=0.44, octaves=1, steps=1, tile=64,
                            precision="float32", flow_workers=workers, interpolate=interpolate, output=str(out)))
        runner.render(job, progress=False, model=lite0)
        videos.append(frames_of(out))
    assert len(videos[0]) == 11  # 0.44 s at 25 fps: with --interpolate 3 the last two frames end the clip
    np.testing.assert_array_equal(videos[1], videos[0])


def test_interpolate_makes_frames_ahead_on_threads(tmp_path):
    """`interpolate` makes whole frames ahead on worker threads: the same frames as in line, in order."""
    clip = tmp_path / "in.mp4"
    with media.VideoWriter(clip, 10, crf=0) as writer:
        for frame in media.read_video(os.path.join(ROOT, "tests", "data", "example.mp4"), duration=0.4,
                                      max_size=64):
            writer.write(frame)
    made = []
    for workers in (0, 3):
        memory = MemorySink()
        runner.render(make_job(dict(command="interpolate", input=str(clip), factor=3, flow_workers=workers,
                                    output=str(tmp_path / f"out{workers}.mp4"))), progress=False, sinks=(memory,))
        made.append(np.stack([memory.frames[i] for i in range(len(memory.frames))]))
    assert len(made[0]) == 30
    np.testing.assert_array_equal(made[1], made[0])


def test_flow_estimated_smaller_is_close_to_full_size(tmp_path):
    """--flow-size estimates the flow on frames shrunk to that longest side and scales it up: different
    in-betweens (it is used), close to the full-size flow's; a size too small to estimate flow is refused."""
    clip = tmp_path / "in.mp4"
    with media.VideoWriter(clip, 10, crf=0) as writer:
        for frame in media.read_video(os.path.join(ROOT, "tests", "data", "example.mp4"), duration=0.2,
                                      max_size=128):
            writer.write(frame)
    made = {}
    for size in (0, 64):
        memory = MemorySink()
        runner.render(make_job(dict(command="interpolate", input=str(clip), factor=2, flow_size=size,
                                    output=str(tmp_path / f"out{size}.mp4"))), progress=False, sinks=(memory,))
        made[size] = np.stack([memory.frames[i] for i in range(1, len(memory.frames) - 2, 2)]).astype(int)
    differ = np.abs(made[64] - made[0]).mean()
    assert 0 < differ < 2.0
    with pytest.raises(ZoomdreamError, match=r"^--flow-size 7 is too small to estimate flow at \(give 0"):
        runner.render(make_job(dict(command="interpolate", input=str(clip), flow_size=7,
                                    output=str(tmp_path / "small.mp4"))), progress=False)
