"""Every check before the work, alike in every command and in --check: what the real run would refuse, --check
refuses, with the same line, before any model loads."""
import os

import pytest

from zoomdream import runner
from zoomdream.cli import main

DATA = os.path.join(os.path.dirname(__file__), "data")
SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")
CLIP = os.path.join(DATA, "example.mp4")  # 2 s, 640x480, 25 fps
PHOTO = os.path.join(SAMPLES, "chelsea.png")
COMMANDS = {
    "image": ["image", PHOTO, "-o", "{}.png"],
    "zoom": ["zoom", "--noise", "-o", "{}.mp4"],
    "video": ["video", CLIP, "-o", "{}.mp4"],
    "interpolate": ["interpolate", CLIP, "-o", "{}.mp4"],
    "curves": ["curves", "zoom", "--noise", "-o", "{}.png"],
    "render": ["render", "{job}", "-o", "{}.mp4"],
}


class ModelLoaded(Exception):
    pass


@pytest.fixture
def no_model(monkeypatch):
    """A model load (or, for interpolate, which loads none, its source) ends the render at once: what happened
    before it is what the test sees."""
    from zoomdream.loops import interpolate

    def load_model(*args, **kwargs):
        raise ModelLoaded

    monkeypatch.setattr(runner.jobs, "load_model", load_model)
    monkeypatch.setattr(interpolate, "Source", load_model)


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def argv(command: str, output, job) -> list[str]:
    return [a.replace("{}", str(output)).replace("{job}", str(job)) for a in COMMANDS[command]]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_makes_a_missing_output_folder_before_the_model_loads(tmp_path, capsys, command, no_model):
    job = tmp_path / "job.toml"
    job.write_text('command = "zoom"\nnoise = true\n')
    out = tmp_path / "no" / "sub" / "out"
    code, err = run(capsys, *argv(command, out, job), "--check")
    assert code == 0 and err.startswith("checked"), err
    assert not (tmp_path / "no").exists()  # a check changes nothing
    (tmp_path / "file").write_bytes(b"")
    code, err = run(capsys, *argv(command, tmp_path / "file" / "out", job), "--check")
    assert code == 2 and err == f"zoomdream: error: cannot write '{tmp_path / 'file' / 'out'}" \
                                f"{'.png' if command in ('image', 'curves') else '.mp4'}': '{tmp_path / 'file'}' is " \
                                f"a file, not a folder (choose another output folder)", err
    if command == "curves":
        code, err = run(capsys, *argv(command, out, job), "--frames", "3")
        assert code == 0 and (tmp_path / "no" / "sub" / "out.png").is_file(), err
        return
    with pytest.raises(ModelLoaded):
        main(argv(command, out, job))
    assert (tmp_path / "no" / "sub").is_dir()


def ffmpeg(*args) -> None:
    import subprocess

    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", *map(str, args)], check=True)


@pytest.mark.parametrize("check", [True, False])
def test_video_start_past_the_end_and_a_clip_max_size_leaves_too_small_are_refused_up_front(tmp_path, capsys,
                                                                                             check, no_model):
    """--check refuses what the run would fail on later: a start past the clip's end, and a 1x1 clip whose
    --max-size (which never enlarges) leaves it 1x1 (a traceback and empty work folders before)."""
    flag = ["--check"] if check else []
    out = tmp_path / "v.mp4"
    code, err = run(capsys, "video", CLIP, "-o", out, "--start", "100", *flag)
    assert (code, err) == (2, f"zoomdream: error: --start 100 is past the end of '{CLIP}', which lasts 2.00 s "
                              f"(give a start below 2.00)")
    tiny = tmp_path / "bitmap.mkv"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=1x1:d=1:r=10", "-c:v", "png", tiny)
    code, err = run(capsys, "video", tiny, "-o", out, "--max-size", "96", *flag)
    assert code == 2 and err.startswith(f"zoomdream: error: video '{tiny}': frame size 1x1 is too small"), err
    assert "at least 8x8" in err, err
    assert sorted(os.listdir(tmp_path)) == ["bitmap.mkv"]


def test_job_file_paths_are_read_from_its_folder_and_saved_jobs_reload_from_anywhere(tmp_path, capsys,
                                                                                    monkeypatch):
    """A job file's relative input and output are its folder's (they were the current folder's); the job a
    render saves names its paths so that it renders again from any folder."""
    import shutil

    from zoomdream.config import load_job_file, make_job, save_job

    jobs = tmp_path / "renders"
    jobs.mkdir()
    shutil.copy(PHOTO, jobs / "cat.png")
    (jobs / "zoom.toml").write_text('command = "zoom"\ninput = "cat.png"\noutput = "out/z.gif"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = run(capsys, "render", "../renders/zoom.toml", "--frames", "2", "--max-size", "32", "--steps", "1",
                    "--octaves", "1", "--tile", "64")
    assert code == 0, err
    assert (jobs / "out" / "z.gif").is_file() and os.listdir(elsewhere) == []
    saved = (jobs / "out" / "z.job.toml").read_text()
    assert f'input = "{jobs / "cat.png"}"' in saved and 'output = "z.gif"' in saved  # the output is beside it
    again = make_job(load_job_file(jobs / "out" / "z.job.toml"))
    assert again.input == str(jobs / "cat.png") and again.output == str(jobs / "out" / "z.gif")
    first = make_job(dict(command="zoom", input="../renders/cat.png", output="z.gif", guide="g.png"))
    save_job(first, jobs / "first.toml")
    settings = first.settings_hash()
    monkeypatch.chdir(tmp_path)  # another folder: the same files, the same settings (a resume matches)
    loaded = make_job(load_job_file(jobs / "first.toml"))
    assert os.path.samefile(loaded.input, jobs / "cat.png") and loaded.guide == str(elsewhere / "g.png")
    assert loaded.settings_hash() == settings


def interrupted_render(tmp_path, **settings):
    """A work folder as an interrupted noise zoom leaves it (its job.toml and state.json), with ``settings``."""
    import json

    from zoomdream.config import make_job, save_job

    out = tmp_path / "z.mp4"
    job = runner.check_job(make_job(dict(command="zoom", noise=True, output=str(out), **settings)))[2]
    work = runner.work_folder(out)
    work.mkdir()
    save_job(job, work / "job.toml")
    state = {"version": 2, "settings": job.settings_hash(), "span": [0, 120], "done": 24, "carry": {}}
    (work / "state.json").write_text(json.dumps(state))
    return out, work


def test_a_resume_with_changed_settings_names_them(tmp_path, capsys, no_model):
    out, work = interrupted_render(tmp_path, steps=3, zoom="1.02")
    zoom = ["zoom", "--noise", "-o", out, "--resume"]
    code, err = run(capsys, *zoom, "--steps", "4", "--zoom", "1.05")
    assert (code, err) == (2, f"zoomdream: error: cannot resume {work}: these settings differ: steps (3 there, 4 "
                              f"here), zoom (1.02 there, 1.05 here) (use the settings in {work / 'job.toml'}, or "
                              f"delete the folder to start over)")
    code, err = run(capsys, *zoom, "--steps", "3", "--zoom", "1.02", "--seed", "1", "--check")
    assert code == 2 and "this setting differs: seed (0 there, 1 here)" in err, err
    code, err = run(capsys, *zoom, "--steps", "3", "--zoom", "1.02", "--check")
    assert code == 0, err


def test_a_second_render_into_a_busy_output_is_refused_before_its_model_loads(tmp_path, capsys, no_model):
    """The second render was told to delete the live render's folder (which killed it), or, before the first
    segment was kept, was refused only after loading its model; now both are the lock's one line, up front."""
    from zoomdream.store import FrameStore

    out = tmp_path / "z.mp4"
    live = FrameStore(runner.work_folder(out))
    live.lock()  # a render of z.mp4 is running, with no frame kept yet
    try:
        for extra in ([], ["--resume"], ["--check"]):
            code, err = run(capsys, "zoom", "--noise", "-o", out, *extra)
            assert (code, err) == (2, f"zoomdream: error: another render is using '{runner.work_folder(out)}' "
                                      f"(wait for it to finish, or give this one another output or --frames-dir)")
        (live.work / "state.json").write_text("{}")  # it has kept frames
        code, err = run(capsys, "zoom", "--noise", "-o", out)
        assert code == 2 and "another render is using" in err, err
    finally:
        live.release()


def test_resume_of_a_finished_render_is_refused(tmp_path, capsys, no_model):
    out = tmp_path / "z.mp4"
    out.write_bytes(b"a finished render")
    code, err = run(capsys, "zoom", "--noise", "-o", out, "--resume")
    assert (code, err) == (2, f"zoomdream: error: '{out}' is finished: there is nothing to resume (leave out --resume "
                              f"to render it again, or give another output)")
    assert out.read_bytes() == b"a finished render"


# ------------------------------------------------------------------------------------------------------------
# Found by fault injection: each one line, exit 2, in bounded time and memory


def job_file(tmp_path, line: str):
    path = tmp_path / "job.toml"
    path.write_text(f'command = "zoom"\nnoise = true\noutput = "z.mp4"\n{line}\n')
    return path


@pytest.mark.parametrize("line, words", [
    ("zoom = " + "[" * 10_000 + "]" * 10_000, "nests values too deeply"),  # a RecursionError traceback
    ('zoom = "' + "1+" * 5_000_000 + '1"', "is larger than 1 MB"),  # 7.7 s and 2.5 GB, the line 10 MB long
    ('zoom = "' + "1+" * 60_000 + '1"', "setting 'zoom' is 120,001 characters long (at most 100,000: shorten it)"),
    ('zoom = "' + "+".join(["max(" + ",".join(["sin(t)"] * 90) + ")"] * 20) + '"',
     "expression has 5,459 terms (at most 2,000"),
    ('zoom = "max(1.02' + ",1" * 101 + ')"', "max takes 2 to 100 arguments, got 102"),
    ('layers = "' + ",".join(["block3:1"] * 65) + '"', "the layer spec has 65 terms (at most 64"),
    ('zoom = "' + ", ".join(f"{i}:(1.02)" for i in range(20_000)) + '"', "characters long (at most 100,000"),
    ('frames_dir = "' + "o" * 10_000 + '"', "setting 'frames_dir' is 10,0"),
    ("stepz" * 100_000 + " = 1", "unknown setting 'stepzstepz"),
], ids=["brackets", "10MB", "long", "terms", "arguments", "layers", "keyframes", "path", "key"])
def test_job_text_is_bounded_and_so_is_the_error_line(tmp_path, capsys, line, words):
    import time

    path = job_file(tmp_path, line)
    start = time.perf_counter()
    code, err = run(capsys, "render", path, "--check")
    assert code == 2 and len(err.splitlines()) == 1 and words in err, err[:300]
    assert len(err) <= 1000 + len("zoomdream: error: ") and time.perf_counter() - start < 5


def test_a_fifo_is_not_called_empty(tmp_path, capsys):
    for name in ("in.mp4", "job.toml"):
        os.mkfifo(tmp_path / name)  # opened for reading, it would block until a writer came
    code, err = run(capsys, "video", tmp_path / "in.mp4", "-o", tmp_path / "o.mp4", "--check")
    assert (code, err) == (2, f"zoomdream: error: cannot read '{tmp_path / 'in.mp4'}': it is not a regular file (a "
                              f"pipe, socket or device; save it to a file first)")
    code, err = run(capsys, "render", tmp_path / "job.toml", "--check")
    assert code == 2 and "is not a regular file" in err, err


def test_an_output_name_of_10000_characters_is_named_not_echoed(tmp_path, capsys):
    code, err = run(capsys, "zoom", "--noise", "-o", tmp_path / ("o" * 10_000 + ".mp4"), "--check")
    assert code == 2 and err.startswith("zoomdream: error: setting 'output' is ") and len(err) < 200, err


def test_the_test_data_readme_names_test_files_that_exist():
    import re

    text = open(os.path.join(DATA, "README.md")).read()
    named = re.findall(r"tests/(test_\w+\.py)", text)
    assert named and all(os.path.isfile(os.path.join(os.path.dirname(__file__), name)) for name in named), named


@pytest.mark.parametrize("total", [26, None])
def test_the_progress_bar_ends_at_the_frames_made(capsys, total):
    """A variable-rate clip's frame count is an estimate (duration x rate): its bar stopped at 25/26; a clip
    without a duration had no total at all. The bar ends on the frames made, 25/25."""
    import numpy as np

    from zoomdream.loops.common import LoopSource
    from zoomdream.sinks import MemorySink

    class Clip(LoopSource):
        fps = 25.0

        def frame(self, t, previous, rng):
            return np.zeros((8, 8, 3), np.uint8) if t < 25 else None

    source = Clip()
    source.total = total
    memory = MemorySink()
    assert runner.run(source, [memory], seed=0, span=range(0, total or 2 ** 62)) == 25 == len(memory.frames)
    err = capsys.readouterr().err
    assert "25/25" in err.splitlines()[-1].split("\r")[-1], err


def test_a_clip_without_a_duration_gets_a_progress_total(tmp_path):
    """Its frames are counted (a stream copy, nothing decoded), and those the render takes give the bar's total."""
    import subprocess

    import imageio_ffmpeg

    from zoomdream.config import make_job
    from zoomdream.loops import video

    clip = tmp_path / "streamed.mkv"
    with open(clip, "wb") as f:  # written to a pipe, Matroska leaves the duration out
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                        "testsrc=s=64x48:d=2:r=25", "-c:v", "libx264", "-f", "matroska", "pipe:1"], stdout=f, check=True)
    settings = video.resolve(make_job(dict(command="video", input=str(clip), output=str(tmp_path / "o.mp4"))))
    assert settings.info.duration is None and settings.frames is None
    assert video.counted_frames(settings) == 50
    later = video.resolve(make_job(dict(command="video", input=str(clip), start=1.0, every=2, duration=0.5)))
    assert video.counted_frames(later) == 7
