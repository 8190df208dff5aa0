"""The command line: a real still dream, jobs from TOML, and one-line errors with a non-zero exit."""
import os

import imageio.v3 as iio
import numpy as np
import pytest

from zoomdream.cli import main

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")
TINY = ["--octaves", "2", "--steps", "2", "--max-size", "80", "--tile", "64"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def test_image_dreams_and_keeps_size(tmp_path, capsys):
    out = tmp_path / "dream.png"
    code, _ = run(capsys, "image", os.path.join(SAMPLES, "chelsea.png"), "-o", out, *TINY)
    assert code == 0
    img = iio.imread(out)
    assert img.shape == (53, 80, 3)


def test_image_handles_grayscale_rgba_and_gif(tmp_path, capsys):
    rng = np.random.default_rng(0)
    inputs = {"gray.png": rng.integers(0, 255, (40, 50), np.uint8),
              "rgba.png": rng.integers(0, 255, (40, 50, 4), np.uint8)}
    for name, arr in inputs.items():
        iio.imwrite(tmp_path / name, arr)
    iio.imwrite(tmp_path / "anim.gif", rng.integers(0, 255, (3, 40, 50, 3), np.uint8))
    for name in ["gray.png", "rgba.png", "anim.gif"]:
        code, err = run(capsys, "image", tmp_path / name, "-o", tmp_path / f"{name}.jpg", *TINY)
        assert code == 0, err
        assert iio.imread(tmp_path / f"{name}.jpg").shape == (40, 50, 3)


@pytest.mark.parametrize("case,pattern", [
    ("missing", "not found"),
    ("not_image", "not an image|cannot read"),
    ("bad_layer", "unknown layer 'block99'.*valid: stem, block0"),
    ("bad_model", "unknown model 'alexnet'"),
    ("no_weights", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, monkeypatch, case, pattern):
    import re

    photo = os.path.join(SAMPLES, "chelsea.png")
    (tmp_path / "notes.png").write_text("not a picture")
    argv = {
        "missing": ["image", tmp_path / "nope.png"],
        "not_image": ["image", tmp_path / "notes.png"],
        "bad_layer": ["image", photo, "--layers", "block99"],
        "bad_model": ["image", photo, "--model", "alexnet"],
        "no_weights": ["image", photo, "--model", "inception_v3"],
    }[case]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    code, err = run(capsys, *argv, "-o", tmp_path / "out.png", *TINY)
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("zoomdream: error:")
    assert re.search(pattern, err), err
    assert not (tmp_path / "out.png").exists()


def test_frames_dir_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "frames").write_text("x")
    code, err = run(capsys, "zoom", "--noise", "--size", "32x32", "--frames", "2", "--tile", "64",
                    "--frames-dir", tmp_path / "frames", "-o", tmp_path / "z.mp4")
    assert code == 2 and len(err.splitlines()) == 1 and "is a file" in err, err
    assert sorted(os.listdir(tmp_path)) == ["frames"]


def test_os_error_mid_render_is_one_line(tmp_path, capsys, monkeypatch):
    from zoomdream import runner

    def disk_full(job, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "out.png"))

    monkeypatch.setattr(runner, "render", disk_full)
    code, err = run(capsys, "image", os.path.join(SAMPLES, "chelsea.png"), "-o", tmp_path / "out.png")
    assert code == 2 and len(err.splitlines()) == 1
    assert "No space left on device" in err and "out.png" in err


def test_render_job_file_with_override(tmp_path, capsys):
    job = tmp_path / "job.toml"
    out = tmp_path / "out.png"
    job.write_text(f'command = "image"\ninput = "{os.path.join(SAMPLES, "chelsea.png")}"\noutput = "{out}"\n'
                   f'octaves = 1\nsteps = 1\nmax-size = 64\ntile = 64\nlayers = "block3"\n')
    code, err = run(capsys, "render", job, "--max-size", "48")
    assert code == 0, err
    assert max(iio.imread(out).shape[:2]) == 48


def test_unknown_job_key_is_named(tmp_path, capsys):
    job = tmp_path / "job.toml"
    job.write_text('command = "image"\nstepz = 3\n')
    code, err = run(capsys, "render", job)
    assert code == 2 and "unknown setting 'stepz'" in err


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["image", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--layers" in text and "--octave-scale" in text


def test_models_lists_layers_with_shapes(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert main(["models", "efficientnet-lite0"]) == 0
    out = capsys.readouterr().out
    assert "[default]" in out and "block10" in out and "(32, 32, 112)" in out
    assert main(["models", "--brief"]) == 0
    out = capsys.readouterr().out
    for name in ("efficientnet-lite0", "inception_v3", "vgg16", "vgg19", "resnet50", "mobilenet_v2"):
        assert name in out
    assert "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5" in out


@pytest.mark.parametrize("argv", [["models", "--brief"], ["models"], ["zoom", "--help"]])
def test_closed_stdout_pipe_ends_quietly(argv):
    """`zoomdream models | head -1`: the reader goes before the listing is written; a real pipe, closed."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "zoomdream.cli", *argv], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.path.dirname(SAMPLES)})
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait() == 0 and err == ""


def test_broken_pipe_of_a_render_is_still_an_error(tmp_path, capsys, monkeypatch):
    """Only stdout's reader going is a quiet end: ffmpeg's pipe breaking mid-render stays an error."""
    from zoomdream import runner

    def encoder_died(job, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(runner, "render", encoder_died)
    code, err = run(capsys, "image", os.path.join(SAMPLES, "chelsea.png"), "-o", tmp_path / "out.png")
    assert code == 2 and "Broken pipe" in err


UP_FRONT = """
import json, sys
from zoomdream.cli import main

def code(argv):
    try:
        return main(argv)
    except SystemExit as e:  # argparse's usage errors and --help
        return e.code

codes = [code(argv) for argv in json.loads(sys.argv[1])]
heavy = [m for m in ("tensorflow", "keras", "jax", "ray", "gradio", "matplotlib") if m in sys.modules]
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def test_up_front_errors_start_no_tensorflow_ray_or_gradio(tmp_path):
    """Usage errors, bad files and settings, --help, a passing --check and the `models` listing answer before TensorFlow (seconds to
    load), Ray or Gradio is imported: run in a fresh interpreter, then its sys.modules is read."""
    import json
    import subprocess
    import sys

    photo = os.path.join(SAMPLES, "chelsea.png")
    (tmp_path / "job.toml").write_text('command = "image"\nstepz = 3\n')
    out = str(tmp_path / "out.png")
    cases = [
        (["image"], 2),  # argparse: no input
        (["image", photo], 2),  # no -o
        (["image", str(tmp_path / "nope.png"), "-o", out], 2),
        (["image", photo, "-o", str(tmp_path / "out.mp4")], 2),  # wrong output kind
        (["image", photo, "-o", out, "--layers", "block99"], 2),
        (["image", photo, "-o", out, "--layers", "block3[40]"], 2),  # block3 has 40 channels
        (["image", photo, "-o", out, "--model", "alexnet"], 2),
        (["image", photo, "-o", out, "--model", "inception_v3"], 2),  # no weights under KERAS_HOME
        (["zoom", "--noise", "-o", str(tmp_path / "z.mp4"), "--steps", "-3"], 2),
        (["zoom", "--noise", "-o", str(tmp_path / "z.mp4"), "--layers", "0:(block3), 10:(mixed3)"], 2),
        (["video", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "v.mp4"), "--chunks", "2"], 2),
        (["render", str(tmp_path / "job.toml")], 2),
        (["render", str(tmp_path / "missing.toml")], 2),
        (["studio", "--port", "99999", "--workdir", str(tmp_path / "studio")], 2),
        (["models"], 0),
        (["zoom", "--help"], 0),
        (["zoom", "--noise", "-o", str(tmp_path / "z.mp4"), "--check"], 0),  # a passing check loads no model
        (["image", photo, "-o", out, "--check"], 0),
    ]
    env = {**os.environ, "PYTHONPATH": os.path.dirname(SAMPLES), "KERAS_HOME": str(tmp_path / "keras")}
    result = subprocess.run([sys.executable, "-c", UP_FRONT, json.dumps([argv for argv, _ in cases])], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["codes"] == [code for _, code in cases], result.stderr
    assert report["heavy"] == [], result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("zoomdream: error:")]
    assert len(errors) == 14, result.stderr  # one line each, argparse's usage error too


# ---------------------------------------------------------------------------------------------------------------
# Usage errors: argparse's usage block and message become one line that names the option and the fix


def usage_error(capsys, *argv) -> str:
    """The whole of stderr for a command line argparse refuses (exit 2), which must be one line."""
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1, err
    return err.strip()


@pytest.mark.parametrize("argv, line", [
    (["zoom", "--noise", "--frames", "abc"], "--frames 'abc' is not a whole number (give one, e.g. --frames 10)"),
    (["zoom", "--noise", "--fps", "fast"], "--fps 'fast' is not a number (give one, e.g. --fps 24.0)"),
    (["zoom", "--noise", "--frame", "3"], "zoomdream zoom has no option --frame (did you mean --frames?)"),
    (["video", "clip.mp4", "--octave=3"], "zoomdream video has no option --octave (did you mean --octaves?)"),
    (["video", "clip.mp4", "--frames", "3"], "zoomdream video has no option --frames (that is an option of zoom and live; see "
                                             "`zoomdream video --help`)"),
    (["zoom", "--noise", "--precision", "float"],
     "unknown --precision value 'float' (did you mean float32? choose from auto, float32, bfloat16)"),
    (["zoomm"], "unknown command 'zoomm' (did you mean zoom? choose from image, zoom, video, interpolate, live, "
                "render, curves, models, studio)"),
    ([], "give a command: image, zoom, video, interpolate, live, render, curves, models, studio (see `zoomdream "
         "--help`)"),
    (["video"], "no input video given (e.g. zoomdream video clip.mp4 -o dreamy.mp4)"),
    (["render"], "no job file given (e.g. zoomdream render job.toml)"),
    (["zoom", "--noise", "--zoom", "-0.5+t"], "--zoom needs a value, and '-0.5+t' reads as an option (write "
                                              "--zoom=-0.5+t)"),
    (["zoom", "--noise", "--frames"], "--frames needs a value (--frames FRAMES)"),
    (["zoom", "--noise=yes"], "--noise takes no value (write --noise alone)"),
    (["image", "a.jpg", "b.jpg"], "unexpected argument 'b.jpg' (see `zoomdream image --help`)"),
    (["curves", "zoom", "--noise", "--frame", "3"], "zoomdream zoom has no option --frame (did you mean --frames?)"),
])
def test_usage_errors_are_one_line_naming_the_option_and_the_fix(capsys, argv, line):
    assert usage_error(capsys, *argv) == f"zoomdream: error: {line}"


def test_an_input_named_like_an_option_is_told_how_to_write_it(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(os.path.join(os.path.dirname(__file__), "data", "example.mp4"), "-video-with-dash-.mp4")
    assert usage_error(capsys, "video", "-video-with-dash-.mp4", "-o", "x.mp4") == (
        "zoomdream: error: '-video-with-dash-.mp4' reads as an option: write ./-video-with-dash-.mp4, or put it "
        "last after -- (zoomdream video -o OUT -- -video-with-dash-.mp4)")
    assert usage_error(capsys, "zoom", "-photo.png", "-o", "x.mp4").startswith(  # zoom's input is optional
        "zoomdream: error: '-photo.png' reads as an option: write ./-photo.png")
    for argv in (["./-video-with-dash-.mp4", "-o", "x.mp4"], ["-o", "x.mp4", "--", "-video-with-dash-.mp4"]):
        assert main(["video", "--check", *argv]) == 0, capsys.readouterr().err  # both fixes work


@pytest.mark.parametrize("port, line", [
    (99999, "--port 99999 is not a port number (give one from 1 to 65535, e.g. --port 7860)"),
    ("taken", "--port {port} is in use on 127.0.0.1 (another studio or program listens there: stop it, or choose "
              "another port, e.g. --port {next})"),
])
def test_a_studio_port_it_cannot_listen_on_is_one_line_and_makes_no_folder(tmp_path, capsys, port, line):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        if port == "taken":
            port = taken.getsockname()[1]
            line = line.format(port=port, next=port + 1)
        code, err = run(capsys, "studio", "--port", port, "--workdir", tmp_path / "studio")
    assert (code, err) == (2, f"zoomdream: error: {line}")
    assert os.listdir(tmp_path) == []


def test_a_still_image_given_to_video_or_interpolate_points_to_image_and_zoom(tmp_path, capsys):
    """ffmpeg opens a JPEG or PNG as a clip of one frame: it made a one-frame MP4 without a word."""
    import shutil

    photo = tmp_path / "photo.jpg"
    iio.imwrite(photo, np.zeros((48, 64, 3), np.uint8))
    shutil.copy(os.path.join(SAMPLES, "chelsea.png"), tmp_path / "cat.mp4")  # a PNG, named like a clip
    for command, path in (("video", photo), ("interpolate", photo), ("video", tmp_path / "cat.mp4")):
        code, err = run(capsys, command, path, "-o", tmp_path / "out.mp4")
        assert (code, err) == (2, f"zoomdream: error: '{path}' is a still image, not a video (dream it with "
                                  f"`zoomdream image {path} -o OUT.png`, or zoom into it with `zoomdream zoom {path} "
                                  f"-o OUT.mp4`)")
    assert sorted(os.listdir(tmp_path)) == ["cat.mp4", "photo.jpg"]


def test_a_clip_too_small_says_its_frame_size(tmp_path, capsys):
    import subprocess

    from zoomdream.media.ffmpeg import ffmpeg_exe

    clip = tmp_path / "bitmap.mkv"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "color=red:s=1x1:d=0.2", "-c:v", "ffv1",
                    str(clip)], check=True)
    code, err = run(capsys, "video", clip, "-o", tmp_path / "out.mp4")
    assert (code, err) == (2, f"zoomdream: error: video '{clip}': frame size 1x1 is too small (at least 8x8 "
                              f"pixels)")  # was "video '...' is 1x1 is too small"


def test_saved_zoom_job_holds_its_own_keys_resolved(tmp_path, capsys):
    """A zoom from an image saves no noise-start size and no video or interpolate keys, but names the layers
    it dreamed; the progress bar counts the dreams (a loop's frame 0 carries a warm-up along the path); the
    saved job renders again; --resume with nothing to resume says it starts afresh."""
    from zoomdream.config import load_toml
    from zoomdream.loops.zoom import WARM_UP

    out = tmp_path / "z.gif"
    code, err = run(capsys, "zoom", os.path.join(SAMPLES, "chelsea.png"), "-o", out, "--max-size", "32",
                    "--frames", "4", "--loop", "--interpolate", "2", "--steps", "1", "--octaves", "1",
                    "--tile", "64", "--size", "800x600", "--resume")
    assert code == 0, err
    assert f"nothing to resume for {out}: starting afresh" in err
    dreams = 1 + -(-WARM_UP // 2) + 1  # frame 0, its warm-up, frame 2 (frame 4 is frame 0 again)
    assert "4/4" in err and f"{dreams} dreams" in err, err
    saved = load_toml(tmp_path / "z.job.toml")
    assert saved["layers"] == "block10:1,block12:1"
    assert not {"size", "noise_scale", "blend", "flow", "smooth", "every", "factor", "start", "resume"} & set(saved)
    again = tmp_path / "again.gif"
    code, err = run(capsys, "render", tmp_path / "z.job.toml", "-o", again)
    assert code == 0, err
    assert np.array_equal(iio.imread(again, index=None), iio.imread(out, index=None))


def test_saved_job_reloads_with_the_same_settings_hash():
    """Another command's settings in a job file are not the job's: they are not saved, and the job loads back
    with the same hash (a resume from the saved job.toml matches the interrupted render)."""
    from zoomdream.config import job_to_toml, make_job
    from zoomdream.config import tomllib

    job = make_job(dict(command="zoom", input="in.png", output="z.mp4", size="800x600", blend=0.9, factor=3))
    saved = tomllib.loads(job_to_toml(job))
    assert not {"size", "blend", "factor"} & set(saved)
    assert make_job(saved) == job and make_job(saved).settings_hash() == job.settings_hash()
    smooth = make_job(dict(command="interpolate", input="in.mp4", output="s.mp4", layers="block3", steps=9))
    assert not {"layers", "steps", "model", "octaves", "seed"} & set(tomllib.loads(job_to_toml(smooth)))
