"""A render owns only what it made, and only while it holds the lock: a refused render, a racing --resume, a
studio, a cluster driver or a second job file never takes away a live render's lock or frames; faults while
writing (a full disk, a read-only folder, another file system, a work folder deleted mid-render) are one line
each, and what was kept resumes to the same result."""
import errno
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_for

from zoomdream import media, runner
from zoomdream.cli import build_parser, job_from_args, main
from zoomdream.errors import ZoomdreamError
from zoomdream.sinks import Sink
from zoomdream.store import SEGMENT_FRAMES, FrameStore, read_state

DATA = os.path.join(os.path.dirname(__file__), "data")
TINY = ["zoom", "--noise", "--size", "48x48", "--octaves", "1", "--steps", "2", "--tile", "64",
        "--precision", "float32"]


def tiny_job(out, frames):
    return job_from_args(build_parser().parse_args([*TINY, "--frames", str(frames), "-o", str(out)]))


def listing(folder):
    """Every path under ``folder`` with its inode and size: what a refused render must leave as it was."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            info = os.stat(path)
            found[os.path.relpath(path, folder)] = (info.st_ino, info.st_size)
    return found


def test_the_issues_reproduction_the_first_render_finishes(tmp_path, capsys):
    out = tmp_path / "same.mp4"
    first = subprocess.Popen([sys.executable, "-m", "zoomdream.cli", *TINY, "--frames", "6", "-o", str(out)],
                             stderr=subprocess.PIPE, text=True)
    work = runner.work_folder(out)
    try:  # the work folder's lock file is made once the frames folder is locked, which a render takes first
        wait_for(lambda: (work / ".zoomdream.lock").exists() or first.poll() is not None)
        assert main([*TINY, "--frames", "6", "--seed", "7", "-o", str(out)]) == 2
        assert capsys.readouterr().err.startswith("zoomdream: error: another render is using")
        _, err = first.communicate(timeout=240)
    finally:
        first.kill()
    assert first.returncode == 0, err
    assert len(list(media.read_video(out))) == 6 and not work.exists()


def live_lock(out, frames_dir=None):
    """The locks a live render of ``out`` holds from before its model loads until its work folder is gone."""
    store = FrameStore(runner.work_folder(out), frames_dir)
    store.lock()
    return store


def refused_by_entry(entry, out, tmp_path, capsys, lite0):
    """Start a render of ``out`` through one entry point; returns its one-line refusal."""
    if entry in ("cli", "resume"):
        assert main([*TINY, "--frames", "2", "--seed", "7", *(["--resume"] if entry == "resume" else []),
                     "-o", str(out)]) == 2
        return capsys.readouterr().err.strip()
    if entry == "job_files":  # `render b.toml a.toml`: b writes the live render's output
        for name, target in (("a", tmp_path / "a.mp4"), ("b", out)):
            (tmp_path / f"{name}.toml").write_text(f'command = "zoom"\nnoise = true\nsize = "48x48"\nframes = 2\n'
                                                   f'octaves = 1\nsteps = 1\nprecision = "float32"\n'
                                                   f'output = "{target}"\n')
        assert main(["render", str(tmp_path / "b.toml"), str(tmp_path / "a.toml")]) == 2
        return capsys.readouterr().err.strip()
    if entry == "studio":  # another page (or another studio on the same folder) rendering the same output
        from zoomdream.studio import Studio

        studio = Studio(tmp_path / "studio", {("efficientnet-lite0", None, "float32"): lite0})
        updates = list(studio.render(tiny_job(out, 2)))
        assert updates[-1].state == "error"
        return updates[-1].message
    if entry == "cluster":  # a second driver of a chunked video render, before any worker starts
        from zoomdream import cluster

        job = job_from_args(build_parser().parse_args(["video", os.path.join(DATA, "example.mp4"), "--max-size",
                                                       "48", "--duration", "0.2", "-o", str(out)]))
        with pytest.raises(ZoomdreamError) as error:
            cluster.render_chunks(job, 2, progress=False)
        return f"zoomdream: error: {error.value}"
    raise ValueError(entry)


@pytest.mark.parametrize("entry", ["cli", "resume", "job_files", "studio", "cluster"])
def test_every_entry_point_refused_by_a_live_render_changes_nothing(entry, tmp_path, capsys, lite0):
    out = tmp_path / "same.mp4"
    live = live_lock(out)
    try:
        before = listing(tmp_path)
        line = refused_by_entry(entry, out, tmp_path, capsys, lite0)
        assert line.startswith("zoomdream: error: another render is using"), line
        assert len(line.splitlines()) == 1
        after = listing(tmp_path)
        for name in set(after) - set(before):  # only the entry's own files, never in the live work folder
            assert name.startswith(("a.toml", "b.toml", "studio")), name
        assert {k: v for k, v in after.items() if k in before} == before  # its lock files and empty folders
        live.open("x", range(0, 2), resume=False)
        live.keep(0, np.zeros((8, 8, 3), np.uint8), {"rng": None, "source": {}})  # the live render goes on
        with pytest.raises(ZoomdreamError, match="another render is using"):
            FrameStore(runner.work_folder(out)).lock()  # and a third render is still kept out
        live.release()
    finally:
        live.release()


def test_two_studios_rendering_one_output(tmp_path, lite0):
    """Two pages (two studios on one folder) render the same output: the second is refused with one line and
    the first finishes undisturbed."""
    from zoomdream.studio import Studio

    models = {("efficientnet-lite0", None, "float32"): lite0}
    first, second = Studio(tmp_path, models), Studio(tmp_path, models)
    job = tiny_job(tmp_path / "same.mp4", 24)
    updates = []
    page = threading.Thread(target=lambda: updates.extend(first.render(job)), daemon=True)
    page.start()
    # job.toml comes with the first frame kept (the state only with the first closed segment)
    wait_for(lambda: (runner.work_folder(Path(job.output)) / "job.toml").exists() or not page.is_alive())
    refused = list(second.render(job))
    page.join(240)
    assert [u.state for u in refused][-1] == "error" and "done" not in [u.state for u in refused]
    assert refused[-1].message.startswith("zoomdream: error: another render is using")
    assert updates[-1].state == "done" and updates[-1].message.startswith("done: 24 frames"), updates[-1]
    assert len(list(media.read_video(job.output))) == 24


# ---------------------------------------------------------------------------------------------------------------
# Faults while writing


@pytest.fixture
def cli(monkeypatch, capsys, lite0):
    """``cli(*argv)``: the zoomdream command in this process, on the shared model: (exit code, stderr)."""
    monkeypatch.setattr(runner.jobs, "load_model", lambda *args, **kwargs: lite0)

    def call(*argv):
        code = main([str(a) for a in argv])
        lines = capsys.readouterr().err.replace("\r", "\n").splitlines()
        return code, "\n".join(line for line in lines if line and not line.startswith("frames:"))

    return call


def frames_of(path):
    return list(media.read_video(path))


def assert_same_video(a, b):
    first, second = frames_of(a), frames_of(b)
    assert len(first) == len(second) > 0
    for x, y in zip(first, second):
        assert x.dtype == y.dtype == np.uint8 and np.array_equal(x, y)


def leftovers(folder):
    """Temporary files left behind: a failed write must remove its own."""
    return [name for name in listing(folder) if ".part" in name or name.endswith(".tmp")]


def one_line(err, *parts):
    assert len(err.splitlines()) == 1 and err.startswith("zoomdream: error: "), err
    for part in parts:
        assert part in err, err


def test_a_full_disk_is_one_line_and_resumes_to_the_same_video(tmp_path, cli, monkeypatch):
    frames = SEGMENT_FRAMES + 6
    args = [*TINY, "--frames", str(frames)]
    assert cli(*args, "-o", tmp_path / "solo.mp4")[0] == 0
    out = tmp_path / "out.mp4"
    write_bytes = Path.write_bytes

    def full_at_the_second_segment(self, data):  # its video is in, the last frame's lossless copy is not
        if self.name.startswith(f".last-{frames - 1:08d}."):
            write_bytes(self, bytes(data)[:len(data) // 2])  # what fitted, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_at_the_second_segment)
    code, err = cli(*args, "-o", out)
    work = runner.work_folder(out)
    assert code == 2
    one_line(err, f"the disk holding '{work}' is full: this render needs about ",
             " KB for the 6 frames left", "then run the same command with --resume")
    state = read_state(work)  # the kept frames and the state that counts them stay valid
    assert state["done"] == SEGMENT_FRAMES and state["segments"] == [[0, SEGMENT_FRAMES]]
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.setattr(Path, "write_bytes", write_bytes)  # space freed
    assert cli(*args, "--resume", "-o", out) == (0, f"wrote {out}")
    assert_same_video(out, tmp_path / "solo.mp4")
    assert not work.exists()


@pytest.fixture
def mount_tmpfs():
    """``mount_tmpfs(folder, options)``: a small file system of our own (skipped where mounting is not allowed
    to this user); unmounted afterwards."""
    mounted = []

    def mount(folder, options):
        folder.mkdir(exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_real_full_disk_stops_with_one_line_and_resumes_after_space_is_freed(tmp_path, cli, mount_tmpfs):
    args = [*TINY, "--frames", str(2 * SEGMENT_FRAMES)]
    assert cli(*args, "-o", tmp_path / "solo.mp4")[0] == 0
    disk = mount_tmpfs(tmp_path / "disk", "size=40k")
    out = disk / "out.mp4"
    code, err = cli(*args, "-o", out)
    assert code == 2
    one_line(err, f"the disk holding '{disk}", "' is full: this render needs about ", "--resume")
    work = runner.work_folder(out)
    kept = read_state(work)["done"] if (work / "state.json").exists() else 0
    assert kept in (0, SEGMENT_FRAMES)  # whole segments are kept, or none
    assert not out.exists() and leftovers(disk) == []
    subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)  # space freed
    assert cli(*args, "--resume", "-o", out) == (0, f"wrote {out}")
    assert_same_video(out, tmp_path / "solo.mp4")


def test_a_read_only_output_folder_is_one_line_and_left_as_it_was(tmp_path, cli, mount_tmpfs):
    folder = tmp_path / "ro"
    if os.geteuid() == 0:  # permissions do not stop root: a read-only file system does
        mount_tmpfs(folder, "size=64k,ro")
    else:
        folder.mkdir()
        folder.chmod(0o555)
    code, err = cli(*TINY, "--frames", "2", "-o", folder / "out.mp4")
    assert code == 2
    one_line(err, f"cannot write '{folder / 'out.mp4'}': folder '{folder}' is read-only")
    assert os.listdir(folder) == []


def other_file_system(tmp_path, mount_tmpfs):
    """A folder on another file system than ``tmp_path``: /dev/shm where it is one, else a tmpfs of our own."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(tmp_path).st_dev:
        return Path(tempfile.mkdtemp(dir=shm))
    return mount_tmpfs(tmp_path / "other", "size=4m")


def test_frames_on_another_file_system(tmp_path, cli, mount_tmpfs, monkeypatch):
    """Every temporary file lies beside its target, so no rename crosses file systems (a rename between folders
    is refused here as the kernel refuses one between devices)."""
    replace = os.replace

    def same_folder_only(source, target):
        if Path(source).parent != Path(target).parent:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        replace(source, target)

    monkeypatch.setattr(os, "replace", same_folder_only)
    frames = other_file_system(tmp_path, mount_tmpfs) / "frames"
    try:
        assert os.stat(frames.parent).st_dev != os.stat(tmp_path).st_dev
        args = [*TINY, "--frames", "3"]
        assert cli(*args, "--frames-dir", frames, "-o", tmp_path / "out.mp4") == (0, f"wrote {tmp_path / 'out.mp4'}")
        assert len(media.list_frames(frames)) == 3 and leftovers(frames) == []
        assert not runner.work_folder(tmp_path / "out.mp4").exists()
    finally:
        shutil.rmtree(frames.parent, ignore_errors=True)


class DeleteFolder(Sink):
    """Deletes a folder once frame ``index`` is kept, as a user cleaning up mid-render would."""

    def __init__(self, folder, index):
        self.folder, self.index = folder, index

    def write(self, index, frame):
        if index == self.index:
            shutil.rmtree(self.folder)


def test_a_work_folder_deleted_mid_render_is_one_line(tmp_path, lite0):
    from zoomdream.cli import error_line

    out = tmp_path / "out.mp4"
    work = runner.work_folder(out)
    with pytest.raises(ZoomdreamError) as error:
        runner.render(tiny_job(out, 4), progress=False, model=lite0, sinks=(DeleteFolder(work, 1),))
    one_line(error_line(error.value), f"the folder '{work}' was deleted while this render was writing into it",
             "without --resume")
    assert os.listdir(tmp_path) == []  # nothing made again, no half-written output


# ---------------------------------------------------------------------------------------------------------------
# Stress: many processes, a few outputs, kills at random moments

REFUSALS = ("zoomdream: error: another render is using", "zoomdream: error: an interrupted render exists")


def kept_frames(work):
    """Frames the state of ``work`` counts (-1: no state yet)."""
    try:
        return read_state(work)["done"]
    except ZoomdreamError:
        return -1


def test_stress_six_processes_three_outputs_killed_at_random(tmp_path, lite0):
    """Six `zoomdream zoom` processes aimed at three outputs (a render and a --resume racing it on each), each
    killed (SIGKILL) at a seeded moment (before its model loads, or once its output holds k frames) or left to
    finish. No process may print a traceback; every finished output equals a solo render, and every unfinished
    one resumes to it."""
    import random

    rng = random.Random(23)  # two finish; kills before the model loads, at frame 0 and at frame 1
    outs = [tmp_path / f"out{k}.mp4" for k in range(3)]
    argv = {out: [*TINY, "--frames", "4", "--seed", str(10 + k), "-o", str(out)] for k, out in enumerate(outs)}
    plan = []  # (output, --resume?, seconds to wait before starting, kill once this many frames are kept or None)
    for i in range(6):
        plan.append((outs[i % 3], i >= 3, rng.uniform(0, 1.5) if i >= 3 else 0.0,
                     rng.choice([None, -1, 0, 1, 2, 3])))
    logs = [open(tmp_path / f"p{i}.err", "w+") for i in range(6)]
    procs, pending, started = [], list(range(6)), time.monotonic()
    deadline = started + 600  # ends only a hung test
    try:
        while pending or any(proc.poll() is None for _, proc in procs):
            assert time.monotonic() < deadline, "the processes did not end"
            for i in list(pending):
                out, resume, delay, _ = plan[i]
                if time.monotonic() - started >= delay:
                    procs.append((i, subprocess.Popen([sys.executable, "-m", "zoomdream.cli", *argv[out],
                                                       *(["--resume"] if resume else [])],
                                                      stdout=subprocess.DEVNULL, stderr=logs[i])))
                    pending.remove(i)
            for i, proc in procs:
                out, _, _, kill_at = plan[i]
                if kill_at is not None and proc.poll() is None and kept_frames(runner.work_folder(out)) >= kill_at:
                    proc.kill()
            time.sleep(0.05)
    finally:
        for _, proc in procs:
            proc.kill()
            proc.wait()
    for i, proc in procs:
        logs[i].seek(0)
        err = logs[i].read()
        assert "Traceback" not in err, err
        last = err.strip().splitlines()[-1] if err.strip() else ""
        assert (proc.returncode in (0, -9) or proc.returncode == 2 and last.startswith(REFUSALS)), (
            plan[i], proc.returncode, err[-2000:])
    for out in outs:
        job = job_from_args(build_parser().parse_args([*argv[out]]))
        solo = tmp_path / f"solo-{out.name}"
        runner.render(replace(job, output=str(solo)), progress=False, model=lite0)
        if out.exists() and not runner.work_folder(out).exists():  # finished
            assert_same_video(out, solo)
        if not (out.exists() and not runner.work_folder(out).exists()):  # unfinished (or never started)
            # every process was reaped above, so the OS has released its lock: one resume finishes it
            runner.render(replace(job, resume=True), progress=False, model=lite0)
        assert_same_video(out, solo)
        assert not runner.work_folder(out).exists()
    print(f"stress: {len(procs)} processes, codes {sorted(p.returncode for _, p in procs)}, "
          f"{time.monotonic() - started:.1f} s, left: {sorted(n for n in os.listdir(tmp_path) if n.startswith('.'))}")


def test_a_disk_that_fills_during_the_audio_mux_gets_the_disk_full_line_with_the_video_s_size(tmp_path, cli,
                                                                                              monkeypatch):
    """It got "cannot add audio ... try without audio or convert the audio to AAC", and the disk-full line said
    "about 1 KB for the 0 frames left" at the join: now the full disk, and the room the video needs (the
    segments it is copied from), then --resume makes the video."""
    from zoomdream.media import writer

    clip = os.path.join(DATA, "big_buck_bunny_432_433.webm")  # with Vorbis audio: re-encoded to AAC
    args = ["video", clip, "--max-size", "32", "--duration", "0.5", "--octaves", "1", "--steps", "1", "--tile", "64",
            "--precision", "float32"]
    out = tmp_path / "out.mp4"
    real = writer.run_ffmpeg

    def full(ffmpeg_args, failure, fix):
        if "1:a:0?" in ffmpeg_args:  # the audio pass
            raise ZoomdreamError(f"{failure}: ffmpeg said: [out#0/mp4] Error writing trailer: No space left on "
                                 f"device ({fix})")
        real(ffmpeg_args, failure, fix)

    monkeypatch.setattr(writer, "run_ffmpeg", full)
    code, err = cli(*args, "-o", out)
    segments = sum(p.stat().st_size for p in (runner.work_folder(out) / "segments").glob("*.mp4"))
    assert code == 2
    one_line(err, f"the disk holding '{tmp_path}' is full: this render needs about {max(1, round(segments / 1024))} "
                  f"KB for the video (free that space, then run the same command with --resume)")
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.setattr(writer, "run_ffmpeg", real)
    assert cli(*args, "-o", out, "--resume") == (0, f"wrote {out}")
    assert len(frames_of(out)) == 12


def test_temporary_files_of_a_render_killed_at_the_join_are_removed_by_the_next_that_completes(tmp_path, cli):
    """A kill -9 during the final join leaves the join's hidden temporary files (the video, its audio pass, the
    segment list); the render that completes the output next removes them, and never a live writer's."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names no process now
    out = tmp_path / "out.mp4"
    left = [tmp_path / f".out.{tag}-{dead.pid}-1.mp4" for tag in ("part", "video.part", "segments.txt")]
    live = tmp_path / f".out.part-{os.getppid()}-1.mp4"
    for path in [*left, live]:
        path.write_bytes(b"half a video")
    assert cli(*TINY, "--frames", "2", "-o", out) == (0, f"wrote {out}")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [live.name]
