"""Defects found by trying bad inputs as a user and an attacker would: each is one line and exit 2, before any
work, and no input is ever changed."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import wait_for

from zoomdream import media
from zoomdream.cli import main
from zoomdream.store import FrameStore

DATA = os.path.join(os.path.dirname(__file__), "data")
SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")
NOISE = ["zoom", "--noise", "--size", "64x64", "--frames", "2", "--tile", "64", "--octaves", "1", "--steps", "1"]


def run(capsys, *argv):
    start = time.perf_counter()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err, time.perf_counter() - start


def one_line_error(capsys, *argv, pattern: str) -> str:
    code, err, seconds = run(capsys, *argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("zoomdream: error:"), err
    assert pattern in err, err
    return err


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in os.listdir(folder) if (folder / name).is_file()}


@pytest.mark.parametrize("case", ["video", "image", "dot_slash", "link", "guide", "job_file"])
def test_output_never_overwrites_an_input(tmp_path, capsys, monkeypatch, case):
    shutil.copy(os.path.join(DATA, "example.mp4"), tmp_path / "same.mp4")
    shutil.copy(os.path.join(SAMPLES, "chelsea.png"), tmp_path / "a.png")
    os.symlink(tmp_path / "a.png", tmp_path / "link.png")
    (tmp_path / "job.png").write_text(f'command = "image"\ninput = "{tmp_path / "a.png"}"\n'
                                      f'output = "{tmp_path / "job.png"}"\n')
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    argv = {
        "video": ["video", "same.mp4", "-o", "same.mp4", "--max-size", "64", "--duration", "0.12"],
        "image": ["image", "a.png", "-o", "a.png"],
        "dot_slash": ["image", "a.png", "-o", "./a.png"],
        "link": ["image", "link.png", "-o", "a.png"],
        "guide": ["image", "a.png", "-o", "link.png", "--guide", "a.png"],
        "job_file": ["render", "job.png"],
    }[case]
    one_line_error(capsys, *argv, pattern="would overwrite the input")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("flags,pattern", [
    (["--tx", "1e12"], "--tx is 1e+12 at frame 0, outside -64 to 64"),
    (["--zoom", "0:(1.02), 1:(1e9)"], "--zoom is 1e+09 at frame 1"),
    (["--center", "nan,nan"], "--center 'nan,nan' is outside"),
    (["--steps", "1e300"], "--steps at frame 0: 1e+300 is out of range"),
    (["--size", "20000x20000"], "--size 20000x20000 is too large"),
    (["--octave-scale", "0.5"], "--octave-scale 0.5 must be greater than 1"),
    (["--step-size", "nan"], "--step-size: nan is not a finite number"),
    (["--layers", "block10:nan"], "layer weight nan"),
    (["--seed", "-1"], "--seed -1 is out of range"),
    (["--octaves", "0"], "--octaves 0 is out of range"),
    (["--tile", "0"], "--tile 0 is out of range"),
    (["--frames", "0"], "--frames 0 is out of range"),
    (["--zoom", "9" * 5000 + ":(1)"], "is too large"),
    (["--zoom", "0:(1), -5:(2)"], "negative frame number"),
    (["--crf", "99"], "--crf 99 is out of range"),
    (["--fps", "1e-300"], "--fps 1e-300 is out of range"),
])
def test_bad_numbers_fail_before_any_work(tmp_path, capsys, flags, pattern):
    one_line_error(capsys, *NOISE, *flags, "-o", tmp_path / "x.mp4", pattern=pattern)
    assert os.listdir(tmp_path) == []


def test_bad_video_numbers(tmp_path, capsys):
    clip = os.path.join(DATA, "example.mp4")
    one_line_error(capsys, "video", clip, "--every", "0", "-o", tmp_path / "x.mp4", pattern="--every 0 is out")
    one_line_error(capsys, "video", clip, "--blend", "inf", "-o", tmp_path / "x.mp4", pattern="--blend")


def test_channel_past_the_layer_is_named(tmp_path, capsys):
    one_line_error(capsys, *NOISE, "--layers", "block10[999999]", "--precision", "float32",
                   "-o", tmp_path / "x.mp4",
                   pattern="channel 999999 of layer 'block10' does not exist")


def test_second_render_into_a_busy_frames_folder_is_refused(tmp_path, capsys):
    busy = FrameStore(tmp_path / "other.mp4.zoomdream", frames_dir=tmp_path / "frames")
    busy.lock()
    try:
        one_line_error(capsys, *NOISE, "--frames-dir", tmp_path / "frames", "-o", tmp_path / "x.mp4",
                       pattern="another render is using")
    finally:
        busy.release()


def test_sigterm_stops_like_ctrl_c_and_resumes(tmp_path):
    out, frames = tmp_path / "z.mp4", tmp_path / "frames"
    argv = [sys.executable, "-m", "zoomdream.cli", "zoom", "--noise", "--size", "64x48", "--frames", "400",
            "--octaves", "1", "--steps", "1", "--tile", "64", "--frames-dir", str(frames), "-o", str(out)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(media.list_frames(frames)) >= 2 or proc.poll() is not None, seconds=120,
             what="two kept frames")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted (add --resume to the same command to continue)" in err
    assert not out.exists()
    kept = len(media.list_frames(frames))
    assert 2 <= kept < 400


def test_ctrl_c_during_start_up_is_one_line(tmp_path, capsys, monkeypatch):
    from zoomdream import cli

    def interrupted_import():
        raise KeyboardInterrupt  # as if Ctrl-C arrived inside TensorFlow's import

    monkeypatch.setattr(cli, "_quiet_tensorflow_start", interrupted_import)
    code, err, _ = run(capsys, *NOISE, "-o", tmp_path / "x.mp4")
    assert code == 130 and err == "zoomdream: interrupted (add --resume to the same command to continue)"


def test_control_characters_stay_on_one_line(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_text('command = "image"\n"bad\\nkey\\u001e" = 1\n')
    one_line_error(capsys, "render", job, pattern="unknown setting 'bad\\nkey\\x1e'")


def test_flags_are_never_abbreviated(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # `video` has no --frames: it must not be read as --frames-dir
        main(["video", os.path.join(DATA, "example.mp4"), "--frames", "3", "-o", str(tmp_path / "y.gif")])
    assert stop.value.code == 2 and capsys.readouterr().err == (
        "zoomdream: error: zoomdream video has no option --frames (that is an option of zoom and live; see `zoomdream video "
        "--help`)\n")
    assert os.listdir(tmp_path) == []


def test_resume_from_another_input_is_refused(tmp_path, capsys, lite0, interrupt_after):
    from zoomdream import runner
    from zoomdream.config import make_job
    from zoomdream.errors import ZoomdreamError

    image = tmp_path / "in.png"
    shutil.copy(os.path.join(SAMPLES, "chelsea.png"), image)
    job = make_job(dict(command="zoom", input=str(image), max_size=64, frames=4, octaves=1, steps=1, tile=64,
                        layers="block5", output=str(tmp_path / "z.mp4")))
    with pytest.raises(KeyboardInterrupt):
        runner.render(job, progress=False, model=lite0, sinks=(interrupt_after(2),))
    shutil.copy(os.path.join(SAMPLES, "coffee.png"), image)  # same name, another picture
    from dataclasses import replace

    with pytest.raises(ZoomdreamError, match="settings or input differ"):
        runner.render(replace(job, resume=True), progress=False, model=lite0)


def test_several_job_files_never_share_an_output(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / f"{name}.toml").write_text('command = "zoom"\nnoise = true\nsize = "64x48"\nframes = 2\n')
    one_line_error(capsys, "render", tmp_path / "a.toml", tmp_path / "b.toml", "-o", tmp_path / "out.mp4",
                   pattern="two of the job files write the same output")
