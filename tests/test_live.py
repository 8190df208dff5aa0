"""`zoomdream live` against real local streams through the bundled ffmpeg, at 64x48 with the shared model.
Every wait is for an event (a line said, a frame counted, a file written) under a deadline, never a fixed sleep."""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zoomdream import live
from zoomdream.cli import main as cli_main
from zoomdream.config import make_job
from zoomdream.media import stream
from zoomdream.media.ffmpeg import ffmpeg_exe

ROOT = Path(__file__).resolve().parents[1]
W, H = 64, 48
BOX = "color=c=0x204060:s=64x48:r=25[bg];color=c=white:s=12x12:r=25[b];[bg][b]overlay=x='mod(t*{speed}\\,52)':y=18"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sender(port: int, speed: int = 20, gop: int = 25) -> subprocess.Popen:
    """A white box moving right at ``speed`` px/s over a blue field, sent in real time as H.264 in MPEG-TS."""
    return subprocess.Popen([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                             BOX.format(speed=speed), "-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-tune",
                             "zerolatency", "-g", str(gop), "-f", "mpegts", f"udp://127.0.0.1:{port}"],
                            stdin=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()


class Lines:
    """A stand-in terminal that keeps the lines said, and lets a test wait for one."""

    def __init__(self):
        self.text, self.changed = "", threading.Condition()

    def write(self, text: str) -> None:
        with self.changed:
            self.text += text
            self.changed.notify_all()

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def wait_for(self, pattern: str, seconds: float = 30) -> re.Match:
        with self.changed:
            found = self.changed.wait_for(lambda: re.search(pattern, self.text), timeout=seconds)
        assert found, f"no '{pattern}' within {seconds} s in:\n{self.text}"
        return found


def job(source, **settings):
    return make_job({"command": "live", "input": source, "size": f"{W}x{H}", "steps": 1, "fps": 12, **settings})


def start_live(lite0, source, targets, lines, stop_event=None, **settings) -> threading.Thread:
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", live.main(
        job(source, **settings), targets, model=lite0, status=live.Status(lines),
        stop=stop_event.is_set if stop_event else None)), daemon=True)
    thread.result = result
    thread.start()
    return thread


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame a file holds, as stored (a live recording's rate varies; read_video would resample it)."""
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-fps_mode", "passthrough", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return list(np.frombuffer(raw, np.uint8).reshape(-1, H, W, 3))


def box_x(frame: np.ndarray) -> int:
    """The column of the white box: the brightest columns, where blue is lowest against red."""
    return int(np.argmax(np.convolve(frame[..., 0].astype(float).sum(0), np.ones(12), "valid")))


def test_udp_stream_in_dreamed_to_a_file_and_a_udp_stream_that_follow_it(lite0, tmp_path):
    port_in, port_out = free_port(), free_port()
    source = sender(port_in, gop=50)  # started first: the live joins it mid-way, between keyframes
    receiver = stream.NewestFrames(f"udp://127.0.0.1:{port_out}", (W, H)).start()  # ffmpeg listening
    recording = tmp_path / "live.mp4"
    lines = Lines()
    try:
        rc = live.main(job(f"udp://127.0.0.1:{port_in}", frames=24, step_size=0.05),
                       [str(recording), f"udp://127.0.0.1:{port_out}"], model=lite0, status=live.Status(lines))
    finally:
        stop(source)
    assert rc == 0
    assert re.search(r"live: 24 frames in [\d.]+ s", lines.text)
    frames = decoded(recording)
    assert len(frames) == 24
    # The dream is visible: the flat blue field of the source is no longer flat.
    field = np.stack([f[:12] for f in frames]).astype(float)
    assert field.std(axis=(1, 2)).mean() > 4, field.std(axis=(1, 2)).mean()
    # It follows the source: the box moves right across the output frame after frame (wrapping at 52 px).
    xs = [box_x(f) for f in frames]
    moves = [(b - a + 2) % 52 - 2 for a, b in zip(xs, xs[1:])]  # -2 to 49 px: a jitter back, or a move on
    assert all(-2 <= m <= 12 for m in moves) and sum(moves) >= 20, xs
    deadline = time.monotonic() + 10
    while receiver.received < 20 and time.monotonic() < deadline:
        receiver.take(0.5)
    receiver.close()
    assert receiver.received >= 20  # the UDP output carried the stream too


def test_a_stalled_source_holds_the_last_frame_and_recovers(lite0, tmp_path):
    port = free_port()
    recording = tmp_path / "held.mkv"
    lines, done = Lines(), threading.Event()
    status = live.Status(lines)
    first = sender(port)
    result = {}
    run = threading.Thread(target=lambda: result.setdefault("rc", live.main(
        job(f"udp://127.0.0.1:{port}"), [str(recording)], model=lite0, status=status, stop=done.is_set)))
    run.start()

    def wait_line(pattern: str, seconds: float = 30) -> re.Match:
        deadline = time.monotonic() + seconds
        while not (found := re.search(pattern, status.line)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert found, f"no '{pattern}' within {seconds} s: {status.line}"
        return found

    try:
        wait_line(r"live: ([3-9]|\d\d+) frames")
        stop(first)
        lines.wait_for("source stalled: holding the last frame")
        wait_line(r"holding the last frame \(([5-9]|\d\d+)\)")  # the outputs keep getting the last frame
        second = sender(port, speed=40)
        try:
            lines.wait_for("source back")
            back = int(wait_line(r"live: (\d+) frames, [\d.]+ fps").group(1))
            wait_line(rf"live: ({back + 5}|{back + 6}|{back + 7}) frames")  # dreaming again
        finally:
            stop(second)
    finally:
        done.set()
        run.join(30)
    assert result["rc"] == 0
    made, held = map(int, re.search(r"live: (\d+) frames in .* held (\d+)", lines.text).groups())
    assert held >= 5 and len(decoded(recording)) == made + held  # the held frames were recorded as they were sent


def test_ctrl_c_leaves_a_playable_recording(tmp_path):
    recording = tmp_path / "rec.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "zoomdream.cli", "live", str(ROOT / "samples" / "chelsea.png"),
                             "-o", str(recording), "--size", f"{W}x{H}", "--steps", "1", "--fps", "10"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    seen = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not re.search(r"live: ([5-9]|\d\d+) frames", seen):
        seen += proc.stderr.readline()  # the status line comes every 2 s when stderr is not a terminal
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0, seen + rest
    assert "stopped; every output closed" in rest
    assert len(decoded(recording)) >= 5


def test_seconds_count_from_the_first_source_frame(lite0, tmp_path):
    port = free_port()
    lines = Lines()
    began = time.monotonic()
    run = start_live(lite0, f"udp://127.0.0.1:{port}", [str(tmp_path / "s.mp4")], lines, seconds=1.5)
    lines.wait_for("waiting for the first frame")
    source = sender(port)  # the clock has not started: no frame came yet
    try:
        run.join(30)
    finally:
        stop(source)
    total = time.monotonic() - began
    counted = float(lines.wait_for(r"live: \d+ frames in ([\d.]+) s").group(1))
    assert 1.5 <= counted < 2.2
    assert total > counted + 0.3  # the wait for the sender was not counted


@pytest.mark.parametrize("source,named", [("http://127.0.0.1:1/none.ts", "cannot read 'http://127.0.0.1:1/none.ts'"),
                                          ("/dev/video99", "no camera at /dev/video99"),
                                          ("7", "no camera at /dev/video7")])
def test_a_bad_url_or_a_missing_camera_is_one_line_and_exit_2(source, named, tmp_path, capsys):
    began = time.monotonic()
    assert cli_main(["live", source, "-o", str(tmp_path / "x.mp4"), "--size", f"{W}x{H}"]) == 2
    assert time.monotonic() - began < 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("zoomdream: error: ") and named in err, err
    assert not (tmp_path / "x.mp4").exists()


def test_check_needs_no_camera_nor_network(tmp_path, capsys):
    assert cli_main(["live", "/dev/video0", "-o", "udp://127.0.0.1:5000", "-o", str(tmp_path / "a.mp4"),
                     "--check"]) == 0
    assert "checked" in capsys.readouterr().err
    assert cli_main(["live", "/dev/video0", "-o", "foo://x", "--check"]) == 2
    assert "unsupported protocol 'foo'" in capsys.readouterr().err


def test_governor_lowers_the_level_when_slow_and_raises_it_with_room():
    governor = live.Governor(fps=10, count=4)
    levels = [governor.update(0.2) for _ in range(16)]
    assert levels[:10] == [0] * 10  # the first frames pay one-time costs: not counted
    assert levels[-1] == 2  # two steps down after twice three slow frames
    levels = [governor.update(0.02) for _ in range(60)]
    assert levels[-1] == 0


def test_governor_leaves_a_cheaper_level_that_is_no_cheaper_and_does_not_try_it_again():
    """An accelerator's dream of a smaller frame can take as long: dropping to it only loses detail."""
    governor = live.Governor(fps=10, count=3, settle=0)
    levels = [governor.update(0.11) for _ in range(80)]
    assert levels[2] == 1 and levels[-40:] == [0] * 40
    governor = live.Governor(fps=10, count=3, settle=0)
    levels = [governor.update(0.2 if governor.level == 0 else 0.09) for _ in range(40)]
    assert levels[-1] == 1  # a level that does help is kept


@pytest.mark.parametrize("source,settings", [(str(ROOT / "tests" / "data" / "example.mp4"), {}),
                                             (None, {"noise": True, "zoom": 1.05})])
def test_a_file_plays_from_its_start_and_noise_is_a_live_zoom(source, settings, lite0, tmp_path):
    recording = tmp_path / "out.mkv"
    lines = Lines()
    assert live.main(job(source, frames=4, **settings), [str(recording)], model=lite0, status=live.Status(lines)) == 0
    assert "live: 4 frames in" in lines.text
    frames = decoded(recording)
    assert len(frames) == 4 and not np.array_equal(frames[0], frames[-1])


@pytest.mark.skipif(bool(list(Path("/dev").glob("video*"))), reason="this machine has video devices")
def test_a_virtual_camera_that_is_not_there_is_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch):
    import zoomdream.models

    monkeypatch.setattr(zoomdream.models, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    assert cli_main(["live", str(ROOT / "samples" / "chelsea.png"), "-o", "virtualcam", "--size", f"{W}x{H}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "virtual camera" in err, err


def test_an_output_whose_receiver_is_gone_is_one_line_and_the_others_go_on(lite0, tmp_path):
    with socket.socket() as s:  # a TCP port nobody listens on
        s.bind(("127.0.0.1", 0))
        gone = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    recording = tmp_path / "kept.mkv"
    lines = Lines()
    assert live.main(job(str(ROOT / "samples" / "chelsea.png"), frames=6), [gone, str(recording)], model=lite0,
                     status=live.Status(lines)) == 0
    said = [line for line in lines.text.splitlines() if gone in line]
    assert len(said) == 1 and "stopped" in said[0] and "the other outputs go on" in said[0], lines.text
    assert lines.text.rstrip().endswith(f"wrote {recording}")  # the one left
    assert len(decoded(recording)) == 6


def moving_frames(count: int, w: int = W, h: int = H) -> list[np.ndarray]:
    """Smooth texture sliding 2 px right a frame, with a bright square on it."""
    rng = np.random.default_rng(3)
    import cv2

    field = cv2.resize(rng.integers(0, 255, (h // 4, (w + 2 * count) // 4, 3), dtype=np.uint8), (w + 2 * count, h))
    frames = [np.ascontiguousarray(field[:, 2 * count - 2 * k: 2 * count - 2 * k + w]) for k in range(count)]
    for frame in frames:
        frame[10:20, 10:20] = 250
    return frames


def test_frames_prepared_ahead_dream_as_the_serial_loop(lite0):
    """The pipeline prepares frame k+1 (resize, flow from frame k) before frame k dreams; the dreams are the
    serial loop's, exactly."""
    from zoomdream.live.controls import Controls
    from zoomdream.loops.live import Source, resolve

    the_job = job(str(ROOT / "tests" / "data" / "example.mp4"), step_size=0.05)
    settings = resolve(the_job)
    frames = moving_frames(3)
    serial = Source(settings, lite0, Controls(the_job))
    expected = [serial.dreamed(serial.prepare(frame, t)) for t, frame in enumerate(frames)]
    ahead = Source(settings, lite0, Controls(the_job))
    ready = ahead.prepare(frames[0], 0)
    made = []
    for t, frame in enumerate(frames[1:] + [None], 1):
        after = ahead.prepare(frame, t) if frame is not None else None  # while `ready` would dream
        made.append(ahead.dreamed(ready))
        ready = after
    assert ready is None and all(np.array_equal(a, b) for a, b in zip(made, expected))
    assert not np.array_equal(made[1], made[2])


def test_overlapped_frames_follow_the_scene_as_the_serial_loop_does(lite0):
    """On an accelerator frame t+1 is started from frame t-1's output carried over two frames' motion while
    frame t dreams: every frame comes out once, in order, moving with the scene, within a few levels of the
    serial loop's frames."""
    import cv2

    from zoomdream.live.controls import Controls
    from zoomdream.loops.live import Source, resolve

    the_job = job(str(ROOT / "tests" / "data" / "example.mp4"), step_size=0.05)
    frames = moving_frames(8)
    serial = Source(resolve(the_job), lite0, Controls(the_job))
    expected = [serial.dreamed(serial.prepare(frame, t)) for t, frame in enumerate(frames)]
    source = Source(resolve(the_job), lite0, Controls(the_job))
    overlap, made = live.Overlap(source), []
    try:
        for t, frame in enumerate(frames):
            overlap.submit(source.prepare(frame, t))
            if len(overlap.pending) > 1:
                made.append(overlap.finish())
        while overlap.pending:
            made.append(overlap.finish())
    finally:
        overlap.close()
    assert [ready.small is source_ for (_, ready, _), source_ in zip(made, frames)] == [True] * len(frames)
    outputs = [frame for frame, _, _ in made]

    def shifts(video):  # the texture slides 2 px right a frame, under a square that stays
        gray = [np.float32(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)) for f in video]
        return np.array([cv2.phaseCorrelate(a, b)[0][0] for a, b in zip(gray, gray[1:])])

    assert (shifts(outputs) > 1).all() and np.abs(shifts(outputs) - shifts(expected)).max() < 0.2
    differences = [np.abs(np.int16(a) - b).mean() for a, b in zip(outputs, expected)]
    assert max(differences) < 3, differences
    assert min(np.abs(np.int16(a) - b).mean() for a, b in zip(outputs, frames)) > 2  # the dream shows


class SlowSource:
    """Stands in for the live frame source: each dream takes 0.2 s; records when things happen."""

    def __init__(self):
        self.log = []

    def start(self, ready, between):
        self.log.append(("start", ready, between, time.monotonic()))
        return SimpleNamespace(ready=ready)

    def dream(self, started):
        began = time.monotonic()
        time.sleep(0.2)  # far longer than a start: the order is not by chance
        self.log.append(("dream", started.ready, began, time.monotonic()))
        return started.ready * 10

    def finish(self, started, dream):
        return dream + 1


def test_overlap_starts_the_next_frame_while_one_dreams_and_finishes_them_in_order():
    source = SlowSource()
    overlap = live.Overlap(source)
    try:
        overlap.submit(1)
        overlap.submit(2)
        assert overlap.finish()[0] == 11 and overlap.pending[0][0].ready == 2
        overlap.submit(3)
        assert [overlap.finish()[0] for _ in range(2)] == [21, 31] and overlap.finish() is None
    finally:
        overlap.close()
    starts = {e[1]: e for e in source.log if e[0] == "start"}
    dreams = {e[1]: e for e in source.log if e[0] == "dream"}
    assert [starts[k][2] for k in (1, 2, 3)] == [None, 1, 2]  # each started knowing the frame dreaming before it
    assert starts[2][3] < dreams[1][3] and starts[3][3] < dreams[2][3]  # started while the one before dreamed
    assert all(dreams[k][2] >= dreams[k - 1][3] for k in (2, 3))  # one dream at a time, in order


class FakeSource:
    """Counts the source frames taken; ``prepare`` numbers them, or fails when told to."""

    fps, frames = 10.0, None

    def __init__(self, fail_at: int = -1):
        self.taken, self.fail_at, self.arrived = 0, fail_at, 0.0

    def next_source(self, timeout: float) -> np.ndarray:
        self.taken += 1
        return np.full((2, 2, 3), self.taken, np.uint8)

    def prepare(self, frame: np.ndarray, t: int) -> int:
        assert t == int(frame[0, 0, 0]) - 1  # frame t is the t-th prepared: none skipped
        if int(frame[0, 0, 0]) == self.fail_at:
            raise RuntimeError("prepare failed")
        return int(frame[0, 0, 0])


def test_ahead_takes_a_frame_only_when_the_next_dream_is_near_and_hands_them_in_order():
    source = FakeSource()
    ahead = live.Ahead(source)
    try:
        assert ahead.take(5)[0] == 1  # nothing expected yet: prepared at once
        ahead.expect(time.monotonic() + 3600)  # the dream now running ends in an hour
        assert ahead.take(0.2) == (None, 0.0) and source.taken == 1  # no frame taken for it yet: it would be stale
        ahead.expect(0.0)
        assert [ahead.take(5)[0] for _ in range(3)] == [2, 3, 4]
    finally:
        ahead.close()
    assert not ahead.thread.is_alive()


def test_ahead_prepares_no_more_frames_than_asked_for():
    source = FakeSource()
    ahead = live.Ahead(source, frames=2)
    try:
        assert [ahead.take(5)[0] for _ in range(2)] == [1, 2]
        ahead.thread.join(5)
        assert not ahead.thread.is_alive() and source.taken == 2  # --frames 2: no third frame read or prepared
    finally:
        ahead.close()


def test_ahead_hands_an_error_of_the_preparation_to_the_dreaming_thread():
    ahead = live.Ahead(FakeSource(fail_at=2))
    try:
        assert ahead.take(5)[0] == 1
        with pytest.raises(RuntimeError, match="prepare failed"):
            ahead.take(5)
    finally:
        ahead.close()


def test_a_stream_resends_its_last_frame_soon_unless_encoding_is_slow():
    assert live.resend_after(0.001) == live.REPEAT_S <= 1 / 50  # a receiver holds a frame until two more come
    assert live.resend_after(0.02) == pytest.approx(0.06)  # a slow encoder: resends at most a quarter of its time
