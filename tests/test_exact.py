"""Exact outputs: every file we write is timed frame by frame at its nominal rate whatever its frame count, our
own commands read every frame of it back, and a render stopped gracefully and resumed makes the same file."""
import os
import subprocess
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from zoomdream import media, runner
from zoomdream.config import make_job
from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import ffmpeg_exe
from zoomdream.media.probe import constant_rate_frames
from zoomdream.sinks import MemorySink
from zoomdream.store import SegmentStore

from conftest import assert_exact, decoded, job_at, timing

DATA = os.path.join(os.path.dirname(__file__), "data")
MP4 = os.path.join(DATA, "example.mp4")  # 640x480, 25 fps, 2 s, no audio
TINY = dict(octaves=1, steps=1, tile=64, layers="block5", precision="float32")
COUNTS = [1, 2, 23, 24, 25, 26, 27, 47, 48, 49, 50]
RATES = [24, 25, 30000 / 1001, 30]


def segment_store_file(tmp_path, frames: int, fps: float):
    """A whole render's store fed ``frames`` frames and joined into an MP4, as every render makes its file."""
    store = SegmentStore(tmp_path / f"w{frames}", fps=fps)
    store.open("settings", range(frames), False)
    for i in range(frames):
        frame = np.full((16, 32, 3), i * 5 % 256, np.uint8)
        frame[:, : i % 32] = 255
        store.keep(i, frame, {}, True)
    store.flush()
    out = tmp_path / f"o{frames}.mp4"
    store.write_output(media.VideoWriter(out, fps))
    store.remove()
    return out


@pytest.mark.parametrize("fps", RATES)
def test_the_one_join_times_every_frame_count_exactly(tmp_path, fps):
    """25 frames at 25 fps were 24 + 1 in two H.264 segments: the short one had no B-frame delay, one packet
    lasted three frames, the track 1.08 s and ffmpeg said 23.15 fps."""
    for frames in COUNTS:
        assert_exact(segment_store_file(tmp_path, frames, fps), frames, fps)


def zoom_job(tmp_path, name, **overrides):
    return job_at(tmp_path, name, dict(command="zoom", noise=True, size="16x16", frames=25, fps=25, zoom="1.05",
                                       angle="1", seed=3, **TINY), **overrides)


@pytest.mark.parametrize("frames, fps, extra", [(25, 25, {}), (26, 30000 / 1001, {}), (49, 24, {"interpolate": 4}),
                                                (25, 30, {"loop": True})])
def test_zoom_files_are_exact_and_read_back_whole_by_video_and_interpolate(tmp_path, lite0, frames, fps, extra):
    job = zoom_job(tmp_path, "z.mp4", frames=frames, fps=fps, **extra)
    runner.render(job, progress=False, model=lite0)
    assert_exact(job.output, frames, fps)

    video = make_job(dict(command="video", input=job.output, output=str(tmp_path / "v.mp4"), **TINY))
    runner.render(video, progress=False, model=lite0)
    assert_exact(video.output, frames, fps)
    between = make_job(dict(command="interpolate", input=job.output, output=str(tmp_path / "i.mp4"), factor=2))
    runner.render(between, progress=False, model=lite0)
    assert_exact(between.output, 2 * frames, 2 * fps)


def test_video_then_interpolate_keeps_every_input_frame(tmp_path, lite0):
    """The two-step use docs/interpolate.md recommends: dream every 2nd frame, then make the ones between. Each
    dreamed frame is in the result at its own place (input frames 6 and 20 went missing)."""
    video = make_job(dict(command="video", input=MP4, output=str(tmp_path / "v.mp4"), every=2, max_size=32,
                          frames_dir=str(tmp_path / "dreamed"), **TINY))
    runner.render(video, progress=False, model=lite0)
    assert_exact(video.output, 25, 12.5)
    between = make_job(dict(command="interpolate", input=video.output, output=str(tmp_path / "i.mp4"), factor=2))
    made = MemorySink()
    runner.render(between, progress=False, model=lite0, sinks=(made,))
    assert_exact(between.output, 50, 25)
    for k, frame in enumerate(media.read_video(video.output)):  # frame 2k of the result is dreamed frame k
        np.testing.assert_array_equal(made.frames[2 * k], frame)


def test_a_second_of_a_25_fps_clip_is_25_frames_at_25_fps(tmp_path, lite0):
    job = make_job(dict(command="video", input=MP4, output=str(tmp_path / "v.mp4"), duration=1, max_size=32, **TINY))
    runner.render(job, progress=False, model=lite0)
    assert_exact(job.output, 25, 25)


def test_a_file_timed_wrong_by_an_earlier_version_still_reads_whole(tmp_path):
    """A file of 25 frames whose last packet came late (as zoomdream wrote before): its frames are shown one
    frame apart, so every one is read, at the frames' own rate, not the lower average."""
    parts = []
    for k, frames in enumerate((24, 1)):
        path = tmp_path / f"part{k}.mp4"
        with media.VideoWriter(path, 25) as writer:
            for i in range(frames):
                writer.write(np.full((16, 16, 3), (24 * k + i) * 9 % 256, np.uint8))
        parts.append((path, frames))
    old = tmp_path / "old.mp4"
    media.VideoWriter(old, 25).write_segments(parts)  # joined as before: 24 + 1
    count, durations, _ = timing(old)
    assert count == 25 and len(durations) > 1  # the fault this test stands for
    assert constant_rate_frames(old, Fraction(25)) == 25
    info = media.probe_video(old)
    assert (info.n_frames, info.fps) == (25, 25.0) and sum(1 for _ in media.read_video(old)) == 25


def test_a_variable_rate_file_is_still_sampled_by_time(tmp_path):
    """Frames shown for 1, 2 and 3 frame times: not constant-rate, so it is read at its average rate."""
    listing = tmp_path / "list.txt"
    lines = ["ffconcat version 1.0"]
    for k, seconds in enumerate((0.04, 0.08, 0.12, 0.04, 0.08, 0.12)):
        media.write_image(tmp_path / f"f{k}.png", np.full((16, 16, 3), k * 40, np.uint8))
        lines += [f"file 'f{k}.png'", f"duration {seconds}"]
    listing.write_text("\n".join(lines) + "\n")
    vfr = tmp_path / "vfr.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing), "-fps_mode", "vfr",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", str(vfr)], check=True)
    info = media.probe_video(vfr)
    assert constant_rate_frames(vfr, Fraction(25)) is None
    assert sum(1 for _ in media.read_video(vfr)) == info.n_frames != 6


def stopped(job, lite0, interrupt_after, at):
    with pytest.raises(KeyboardInterrupt):
        runner.render(job, progress=False, model=lite0, sinks=(interrupt_after(at),))
    assert not os.path.exists(job.output)
    return replace(job, resume=True)


@pytest.mark.parametrize("stops, extra", [((5,), {}), ((23, 26), {}), ((29,), {}), ((6, 27), {"interpolate": 4}),
                                          ((12,), {"loop": True})])
def test_a_zoom_stopped_gracefully_and_resumed_is_the_same_file(tmp_path, lite0, interrupt_after, stops, extra):
    """Ctrl-C, SIGTERM and the studio's Stop closed the open H.264 segment early, so the resumed file was cut
    into other segments and decoded up to 40 levels apart; now the frames of the open segment are kept
    losslessly and encoded again into the same segment."""
    whole = zoom_job(tmp_path, "whole.mp4", frames=30, **extra)
    runner.render(whole, progress=False, model=lite0)
    job = zoom_job(tmp_path, "cut.mp4", frames=30, **extra)
    for at in stops:
        job = stopped(job, lite0, interrupt_after, at)
    runner.render(job, progress=False, model=lite0)
    np.testing.assert_array_equal(decoded(job.output), decoded(whole.output))
    assert timing(job.output) == timing(whole.output)
    assert not os.path.exists(runner.work_folder(Path(job.output)))


@pytest.mark.parametrize("stops", [(4,), (10, 26)])
def test_a_video_stopped_gracefully_and_resumed_is_the_same_file(tmp_path, lite0, interrupt_after, stops):
    def video(name):
        return make_job(dict(command="video", input=MP4, output=str(tmp_path / name), duration=1.2, max_size=32,
                             **TINY))

    whole = video("whole.mp4")
    runner.render(whole, progress=False, model=lite0)
    job = video("cut.mp4")
    for at in stops:
        job = stopped(job, lite0, interrupt_after, at)
    runner.render(job, progress=False, model=lite0)
    np.testing.assert_array_equal(decoded(job.output), decoded(whole.output))


def test_a_kept_open_segment_that_went_missing_is_one_line(tmp_path, lite0, interrupt_after):
    job = stopped(zoom_job(tmp_path, "cut.mp4", frames=30), lite0, interrupt_after, 5)
    work = runner.work_folder(Path(job.output))
    assert sorted(p.name for p in (work / "open").iterdir()) == [f"{i:08d}.png" for i in range(5)]
    (work / "open" / "00000002.png").unlink()
    with pytest.raises(ZoomdreamError, match="missing or do not match state.json"):
        runner.render(job, progress=False, model=lite0)
