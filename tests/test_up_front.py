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

    monkeypatch.setattr(runner, "load_model", load_model)
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
    assert code == 2 and err.startswith(f"zoomdream: error: video '{tiny}' is 1x1") and "at least 8x8" in err, err
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
