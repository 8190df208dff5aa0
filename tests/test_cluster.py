"""Rendering on a local Ray cluster of 2 worker processes: a batch of jobs, a clip in chunks, a worker killed
mid-render, Ctrl-C and --resume, and the one-line errors (no Ray installed, bad cluster flags)."""
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import decoded, job_at, wait_for

from zoomdream import cluster, media, runner
from zoomdream.cluster import driver, ray_api
from zoomdream.cluster.pool import Borrowed
from zoomdream.cli import main
from zoomdream.config import load_toml, make_job, save_job
from zoomdream.errors import ZoomdreamError
from zoomdream.media.ffmpeg import ffmpeg_exe

from conftest import assert_exact
from ray_nodes import LocalNodes

DATA = os.path.join(os.path.dirname(__file__), "data")
SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")
WEBM = os.path.join(DATA, "big_buck_bunny_432_433.webm")  # 1 s, 24 fps, Vorbis audio
TINY = dict(octaves=1, steps=1, tile=64, layers="block5", precision="float32")  # precision pinned: same everywhere


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the cluster extra is not installed: pip install '.[cluster]'")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=cluster.LOCAL_OBJECT_STORE,
             logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


_POOL = []


@pytest.fixture
def pool(local_ray):
    """Two workers, each with its model loaded, shared by the tests (a test that stops them gets new ones)."""
    if not _POOL or not _POOL[0].actors:
        _POOL[:] = [cluster.Pool(workers=2)]
    return _POOL[0]


def video_job(tmp_path, name, **overrides):
    return job_at(tmp_path, name, dict(command="video", input=WEBM, max_size=64, duration=0.5, **TINY), **overrides)


def load_toml_job(path):
    return make_job(load_toml(path))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pngs(directory):
    return np.stack([media.read_image(p) for p in media.list_frames(directory)])


def audio(video):
    return subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-map", "0:a", "-f", "s16le", "-"],
                          capture_output=True, check=True).stdout


def chunks_here(job, spans, warmup, folder, lite0):
    """The chunks rendered one by one here as the workers render them: each after the first from ``warmup``
    frames before its range, on the source alone."""
    return [pngs(runner.render_piece(job, range(max(0, s.start - warmup) if i else 0, s.stop), folder / str(i),
                                     warmup=0, progress=False, model=lite0) / "frames") for i, s in enumerate(spans)]


def joined(chunks, spans, warmup):
    """What the join must make of them: each chunk's own range, and over the ``warmup`` frames before each
    seam a cross-fade from the chunk before to the chunk after."""
    out = np.concatenate([chunk[-len(s):] for chunk, s in zip(chunks, spans)])
    for k in range(1, len(spans)):
        overlap = min(warmup, spans[k].start)
        for i, t in enumerate(range(spans[k].start - overlap, spans[k].start)):
            weight = (i + 1) / (overlap + 1)
            earlier, later = chunks[k - 1][t - spans[k - 1].stop], chunks[k][i].astype(np.float32)
            out[t] = np.rint((1 - weight) * earlier + weight * later).astype(np.uint8)
    return out


def test_chunk_spans_cover_the_clip_evenly():
    assert cluster.chunk_spans(10, 3) == [range(0, 3), range(3, 7), range(7, 10)]
    assert cluster.chunk_spans(2, 5) == [range(0, 1), range(1, 2)]
    assert cluster.chunk_spans(10, 3, step=4) == [range(0, 4), range(4, 8), range(8, 10)]
    spans = cluster.chunk_spans(9, 3)
    assert cluster.chunk_pieces(spans, 2) == [(0, 3, 0), (1, 6, 0), (4, 9, 0)]  # 2 frames early, kept to fade
    assert cluster.chunk_pieces(spans, 8) == [(0, 3, 0), (1, 6, 0), (4, 9, 0)]  # never before the chunk ahead
    assert cluster.chunk_pieces(spans, 2, fade=False) == [(0, 3, 2), (3, 6, 2), (6, 9, 2)]
    assert cluster.chunk_pieces(cluster.chunk_spans(12, 3, step=2), 3, step=2) == [(0, 4, 0), (2, 8, 0), (6, 12, 0)]


def test_every_loops_settings_give_a_batch_its_cost(tmp_path):
    """A clip counts at the size --max-size shrinks it to, its dreamed frames only; a still once; a clip
    interpolated (nothing dreamed) one step a frame."""
    jobs = {"video": dict(command="video", input=WEBM, max_size=64, duration=0.5, interpolate=2, steps=3),
            "image": dict(command="image", input=os.path.join(SAMPLES, "chelsea.png"), max_size=32, steps=3),
            "interpolate": dict(command="interpolate", input=WEBM)}
    outputs = {"video": "v.mp4", "image": "i.png", "interpolate": "f.mp4"}
    cost = {name: cluster.check(make_job({**values, "output": str(tmp_path / outputs[name])}))[1].cost()
            for name, values in jobs.items()}
    assert cost == {"video": 64 * 36 * 6 * 3, "image": 32 * 21 * 3, "interpolate": 1280 * 720 * 24}


def test_batch_equals_the_jobs_rendered_one_by_one(tmp_path, pool, lite0, monkeypatch):
    files, jobs = [], []
    for name, values in {
        "still": dict(command="image", input=os.path.join(SAMPLES, "chelsea.png"), max_size=64),
        "zoom": dict(command="zoom", noise=True, size="48x32", frames=4, zoom="1.1", seed=3),
        "video": dict(command="video", input=WEBM, max_size=64, duration=0.25),
    }.items():
        out = tmp_path / "cluster" / (name + (".png" if name == "still" else ".mp4"))
        values = {**values, **TINY, "output": str(out)}
        if name != "still":
            values["frames_dir"] = str(tmp_path / "cluster" / f"{name}-frames")
        jobs.append(make_job(values))
        files.append(tmp_path / f"{name}.toml")
        save_job(jobs[-1], files[-1])
    monkeypatch.setattr(driver, "open_pool", lambda *args: Borrowed(pool))  # the module's 2 workers
    os.makedirs(tmp_path / "cluster")
    assert main(["render", *map(str, files), "--cluster"]) == 0

    for job in jobs:  # the same jobs, one by one on this process
        alone = replace(job, output=job.output.replace("cluster", "alone"),
                        frames_dir=job.frames_dir and job.frames_dir.replace("cluster", "alone"))
        os.makedirs(os.path.dirname(alone.output), exist_ok=True)
        runner.render(alone, progress=False, model=lite0)
        if job.command == "image":
            np.testing.assert_array_equal(media.read_image(job.output), media.read_image(alone.output))
            continue
        np.testing.assert_array_equal(pngs(job.frames_dir), pngs(alone.frames_dir))
        np.testing.assert_array_equal(decoded(job.output), decoded(alone.output))
        assert runner.record_path(Path(job.output)).is_file()
    assert len(pngs(jobs[1].frames_dir)) == 4 and len(pngs(jobs[2].frames_dir)) == 6


def test_chunked_video_equals_its_chunks_and_keeps_count_fps_and_audio(tmp_path, pool, lite0):
    whole = video_job(tmp_path, "whole.mp4", frames_dir=str(tmp_path / "whole"))
    runner.render(whole, progress=False, model=lite0)
    job = video_job(tmp_path, "chunked.mp4", frames_dir=str(tmp_path / "chunked"), preview=4,
                    export_schedules=str(tmp_path / "schedules.csv"))
    seen = []
    spans = cluster.render_chunks(job, 3, warmup=2, pool=pool, progress=False,
                                  on_progress=lambda done, total: seen.append((done, total)))
    assert spans == [range(0, 4), range(4, 8), range(8, 12)]
    assert seen[-1] == (16, 16) and all(done <= 16 for done, _ in seen)  # one count over every worker

    a, b = media.probe_video(whole.output), media.probe_video(job.output)
    assert (b.n_frames, b.fps, b.has_audio, b.width, b.height) == (a.n_frames, a.fps, a.has_audio, a.width, a.height)
    assert len(decoded(job.output)) == len(decoded(whole.output)) == 12
    assert_exact(job.output, 12, 24)
    assert audio(job.output) == audio(whole.output) != b""
    frames, reference = pngs(tmp_path / "chunked"), pngs(tmp_path / "whole")
    chunks = chunks_here(job, spans, 2, tmp_path / "here", lite0)
    np.testing.assert_array_equal(frames, joined(chunks, spans, 2))
    np.testing.assert_array_equal(frames[:2], reference[:2])  # the first chunk, up to its fade, has no seam
    for k, unfaded in ((1, 2), (2, 4)):  # after its warm-up, up to the next fade, a chunk is a single-machine
        alone = runner.render_piece(job, spans[k], tmp_path / f"alone{k}", warmup=2, progress=False, model=lite0)
        start = spans[k].start  # render of its range with the same warm-up, dreamed and discarded
        np.testing.assert_array_equal(frames[start:start + unfaded], pngs(alone / "frames")[:unfaded])
    assert np.abs(frames[2:4].astype(int) - reference[2:4]).mean() > 0  # the fade: neither chunk alone
    assert (tmp_path / "chunked.preview.png").is_file() and (tmp_path / "chunked.job.toml").is_file()
    assert len((tmp_path / "schedules.csv").read_text().splitlines()) == 1 + 12  # written once, by the driver
    assert not (tmp_path / "chunked.mp4.zoomdream").exists()  # the chunks' work folders go once joined


def test_chunks_on_one_cpu_workers_equal_the_local_render_of_their_pieces(tmp_path, pool, lite0, monkeypatch):
    """Two workers with one CPU each compute with the threads a local render has: TensorFlow's sums depend on
    its thread count, and 2 octaves x 4 steps are enough for 1 thread and 2 to differ (TINY is not)."""
    monkeypatch.setattr(driver, "open_pool", lambda *args: Borrowed(pool))
    out = tmp_path / "chunked.mp4"
    assert main(["video", WEBM, "-o", str(out), "--max-size", "64", "--duration", "0.5", "--precision", "float32",
                 "--octaves", "2", "--steps", "4", "--frames-dir", str(tmp_path / "frames"), "--chunks", "2",
                 "--warmup", "2", "--cluster"]) == 0
    job = load_toml_job(runner.record_path(out))  # the saved job, as the issue re-rendered it
    frames = pngs(tmp_path / "frames")
    assert len(frames) == 12
    first = runner.render_piece(job, range(0, 4), tmp_path / "first", warmup=0, progress=False, model=lite0)
    np.testing.assert_array_equal(frames[:4], pngs(first / "frames"))  # up to the fade into the second chunk
    second = runner.render_piece(job, range(6, 12), tmp_path / "second", warmup=2, progress=False, model=lite0)
    np.testing.assert_array_equal(frames[6:], pngs(second / "frames"))  # after its warm-up


def test_the_join_copies_each_pieces_stream_and_encodes_only_the_seams(tmp_path, lite0):
    """Pieces that encode the frames the output takes from them alone join without those frames being read
    again: the join encodes only the cross-faded overlaps, adds the audio once, and keeps a single render's
    frame count, fps, duration and audio."""
    whole = video_job(tmp_path, "whole.mp4")
    runner.render(whole, progress=False, model=lite0)
    job = video_job(tmp_path, "joined.mp4")
    pieces = [(0, 5), (3, 9), (7, 12)]  # overlaps 3-4 and 7-8 are cross-faded
    parts = runner.join_parts(pieces)
    assert parts == [(range(0, 3), 0, False), (range(3, 5), 0, True), (range(5, 7), 1, False),
                     (range(7, 9), 1, True), (range(9, 12), 2, False)]
    folders = [runner.render_piece(job, range(*span), tmp_path / str(k), warmup=0, progress=False, model=lite0,
                                   stream=frames) for (frames, k, faded), span in zip(parts[::2], pieces)]
    lossless = [pngs(runner.render_piece(job, range(*span), tmp_path / f"png{k}", warmup=0, progress=False,
                                         model=lite0) / "frames") for k, span in enumerate(pieces)]
    expected = joined(lossless, [range(0, 5), range(5, 9), range(9, 12)], 2)
    # The frames a piece holds alone are kept only in its segments; the cross-faded ones (and the last stream
    # frame, which a resume after the stream starts from) as PNG; 2 frames are too few for a segment.
    assert [sorted(p.name for p in (folder / "frames").glob("*.png")) for folder in folders] == [
        [media.frame_path("", t).name for t in frames] for frames in ([2, 3, 4], [3, 4, 5, 6, 7, 8], [7, 8, 11])]
    runner.join_pieces(job, folders, model=lite0)
    a, b = media.probe_video(whole.output), media.probe_video(job.output)
    assert (b.n_frames, b.fps, b.duration, b.width, b.height, b.video_codec, b.pix_fmt) == \
           (a.n_frames, a.fps, a.duration, a.width, a.height, "h264", "yuv420p")
    assert audio(job.output) == audio(whole.output) != b""
    out = decoded(job.output).astype(int)
    assert out.shape == expected.shape
    with media.VideoWriter(tmp_path / "once.mp4", 24) as once:  # the same frames encoded in one go
        for frame in expected:
            once.write(frame)
    once_error = np.abs(decoded(tmp_path / "once.mp4").astype(int) - expected).mean()
    assert np.abs(out - expected).mean(axis=(1, 2, 3)).max() < 1.5 * once_error  # every frame in its place
    # Streams under 3 frames would not join (x264's B-frame delay): the seams and the 2 frames between them
    # are encoded at the join as one stream, in the folder of the piece its first frame came from.
    assert sorted(p.name for p in folders[1].rglob("*.mp4")) == ["joined-00000003-00000009.mp4"]
    assert [sorted(p.name for p in folder.glob("segments/*.mp4")) for folder in folders] == [
        ["00000000.mp4"], [], ["00000009.mp4"]]
    assert b"moov" in Path(job.output).read_bytes()[:4096]  # faststart: the index first, for browsers


def test_killed_worker_is_restarted_and_its_chunk_retried(tmp_path, pool, lite0):
    job = video_job(tmp_path, "killed.mp4", duration=1.0, frames_dir=str(tmp_path / "killed"))
    victim = pool.pids[0]

    def kill_once(done, total):
        if done >= 1 and pool.pids[0] == victim:
            os.kill(victim, signal.SIGKILL)  # a worker process dies mid-chunk
            pool.pids[0] = None

    spans = cluster.render_chunks(job, 2, warmup=2, pool=pool, progress=False, on_progress=kill_once)
    assert pool.pids[0] is None, "the worker was not killed mid-render"
    pool.pids = pool.ray.get([a.pid.remote() for a in pool.actors])
    assert victim not in pool.pids  # Ray restarted it
    np.testing.assert_array_equal(pngs(tmp_path / "killed"),
                                  joined(chunks_here(job, spans, 2, tmp_path / "here", lite0), spans, 2))
    assert len(decoded(job.output)) == 24


def test_a_running_cluster_of_two_nodes_renders_chunks_through_a_killed_worker(tmp_path, lite0):
    """Two Ray nodes started with Ray's CLI (in token mode, as `ray start --head` is where a token exists);
    the CLI renders 4 chunks on them with --cluster=127.0.0.1:PORT, reading the token as Ray's CLI does; one
    worker is killed mid-chunk. The output equals the chunks rendered here; only these nodes are stopped."""
    pytest.importorskip("ray", reason="the cluster extra is not installed: pip install '.[cluster]'")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout, for the workers too
    out, frames = tmp_path / "nodes.mp4", tmp_path / "frames"
    flags = [f"--{name}={value}" for name, value in TINY.items()]
    with LocalNodes(2, cpus=1, env={"PYTHONPATH": root}) as nodes:
        env = {**os.environ, "PYTHONPATH": root, "RAY_AUTH_TOKEN_PATH": str(nodes.token)}
        env.pop("RAY_AUTH_MODE", None)  # the driver finds out that the head wants a token
        cli = "import sys; from zoomdream.cli import main; sys.exit(main(sys.argv[1:]))"
        log = open(tmp_path / "cli.log", "wb")
        driver = subprocess.Popen([sys.executable, "-c", cli, "video", WEBM, "-o", str(out), "--max-size", "64",
                                   "--duration", "1", *flags, "--frames-dir", str(frames), "--chunks", "4",
                                   "--warmup", "2", "--workers", "2", f"--cluster={nodes.address}"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
        # a worker dies mid-chunk: once a chunk has kept a frame
        wait_for(lambda: driver.poll() is not None or (list((tmp_path / "nodes.mp4.zoomdream").glob(
            "chunk-*/frames/*.png")) and nodes.worker_pids()), seconds=600, what="a chunk's first frame")
        killed = nodes.worker_pids()[0] if driver.poll() is None else None
        if killed is not None:
            os.kill(killed, signal.SIGKILL)
        driver.wait(timeout=600)
        log.close()
        assert driver.returncode == 0, (tmp_path / "cli.log").read_text(errors="replace")[-2000:]
        assert killed is not None and killed not in nodes.worker_pids()  # killed, and Ray started another
        pids = [node.pid for node in nodes.nodes]
    for pid in pids:  # the nodes are stopped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    job = load_toml_job(runner.record_path(out))
    spans = cluster.chunk_spans(24, 4)
    np.testing.assert_array_equal(pngs(frames), joined(chunks_here(job, spans, 2, tmp_path / "here", lite0), spans, 2))
    info = media.probe_video(out)
    assert (info.n_frames, info.fps, info.has_audio) == (24, 24.0, True)


def test_ctrl_c_stops_the_workers_keeps_their_frames_and_resumes(tmp_path, pool, lite0):
    job = video_job(tmp_path, "cut.mp4", frames_dir=str(tmp_path / "cut"))
    pids = list(pool.pids)

    def interrupt(done, total):
        if any((tmp_path / "cut.mp4.zoomdream").glob("chunk-*/state.json")):  # a chunk kept a frame
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cluster.render_chunks(job, 2, warmup=2, pool=pool, progress=False, on_progress=interrupt)
    assert pool.actors == []
    for pid in pids:  # the workers are gone
        wait_for(lambda: not alive(pid), seconds=10, what=f"worker {pid} to end")
    kept = sorted((tmp_path / "cut.mp4.zoomdream").glob("chunk-*/state.json"))
    assert kept and not (tmp_path / "cut.mp4").exists()

    with pytest.raises(ZoomdreamError, match="add --resume"):
        cluster.render_chunks(job, 2, warmup=2, progress=False)
    spans = cluster.render_chunks(replace(job, resume=True), 2, warmup=2, workers=2, progress=False)
    np.testing.assert_array_equal(pngs(tmp_path / "cut"),
                                  joined(chunks_here(job, spans, 2, tmp_path / "here", lite0), spans, 2))


def test_render_takes_several_job_files_in_turn_without_a_cluster(tmp_path, capsys):
    files = []
    for name in ("a", "b"):
        files.append(tmp_path / f"{name}.toml")
        save_job(make_job(dict(command="image", input=os.path.join(SAMPLES, "chelsea.png"), max_size=32,
                               output=str(tmp_path / f"{name}.png"), **TINY)), files[-1])
    assert main(["render", *map(str, files)]) == 0
    assert capsys.readouterr().err.count("wrote") == 2
    assert media.read_image(tmp_path / "a.png").shape == media.read_image(tmp_path / "b.png").shape == (21, 32, 3)


def test_without_ray_any_cluster_flag_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as where it is not installed
    job = tmp_path / "job.toml"
    job.write_text(f'command = "zoom"\nnoise = true\noutput = "{tmp_path / "z.mp4"}"\n')
    for argv in (["video", WEBM, "-o", tmp_path / "v.mp4", "--chunks", "2"],
                 ["video", WEBM, "-o", tmp_path / "v.mp4", "--cluster"],
                 ["render", job, "--cluster", "10.0.0.1:6379"], ["render", job, "--workers", "2"]):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "pip install 'zoomdream[cluster]'" in err, err
    assert os.listdir(tmp_path) == ["job.toml"]


def test_bad_cluster_input_is_one_line_before_any_work(tmp_path, capsys):
    pytest.importorskip("ray")
    a, b, c = tmp_path / "a.toml", tmp_path / "b.toml", tmp_path / "c.toml"
    for f in (a, b):
        f.write_text(f'command = "zoom"\nnoise = true\noutput = "{tmp_path / "same.mp4"}"\n')
    c.write_text(f'command = "zoom"\nnoise = true\noutput = "{tmp_path / "c.mp4"}"\n')
    cases = {
        ("render", a, b, "--cluster"): "write the same output",
        ("render", "--cluster", a, b): "took",
        ("video", WEBM, "-o", tmp_path / "v.mp4", "--chunks", "0"): "--chunks 0",
        ("video", WEBM, "-o", tmp_path / "v.mp4", "--chunks", "2", "--warmup", "-1"): "--warmup -1",
        ("video", WEBM, "-o", tmp_path / "v.mp4", "--chunks", "2", "--steps", "-3"): "--steps",
        ("render", a, "--cluster", "--workers", "0"): "--workers 0",
        ("render", c, "--cluster=127.0.0.1:1"): "cannot reach the Ray cluster at '127.0.0.1:1'",  # nothing listens
        ("zoom", "--noise", "-o", tmp_path / "z.mp4", "--interpolate", "4", "--chunks", "2"): "does not split into "
                                                                                             "chunks",
    }
    for argv, message in cases.items():
        assert main([str(x) for x in argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
    with pytest.raises(ZoomdreamError, match="feedback chain"):
        cluster.render_chunks(make_job(dict(command="zoom", noise=True, output=str(tmp_path / "z.mp4"))), 2)
    assert sorted(os.listdir(tmp_path)) == ["a.toml", "b.toml", "c.toml"]


@pytest.fixture
def head_asking_for_a_token(monkeypatch):
    """A stand-in for a Ray head in token mode: a gRPC server that refuses any request without 'secret'."""
    grpc = pytest.importorskip("grpc")
    ray_raylet = pytest.importorskip("ray._raylet")
    from concurrent.futures import ThreadPoolExecutor

    class Head(grpc.GenericRpcHandler):
        def service(self, details):
            def answer(request, context):
                if dict(context.invocation_metadata()).get("authorization") != "Bearer secret":
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken: token missing or incorrect")
                return b""
            return grpc.unary_unary_rpc_method_handler(answer)

    server = grpc.server(ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((Head(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("RAY_AUTH_MODE", "unset")  # restored after the test, whatever the connection sets
    monkeypatch.delenv("RAY_AUTH_MODE")
    loader = ray_raylet.AuthenticationTokenLoader.instance()
    yield f"127.0.0.1:{port}", loader
    server.stop(0)
    monkeypatch.undo()
    loader.reset_cache()  # the machine's own token again


def test_a_head_asking_for_a_token_gets_this_machines_or_a_one_line_hint(head_asking_for_a_token, tmp_path,
                                                                          capsys, monkeypatch):
    """Ray's `ray start --head` asks for a token where its machine has one; a driver given an explicit address
    sends none unless RAY_AUTH_MODE=token, and Ray retried for 26 s, then blamed the address."""
    address, loader = head_asking_for_a_token
    for env, message in (({"RAY_AUTH_TOKEN": "wrong"}, "refused this machine's authentication token"),
                         ({"RAY_AUTH_TOKEN": "secret", "RAY_AUTH_MODE": "disabled"}, "RAY_AUTH_MODE=disabled")):
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            loader.reset_cache()
            argv = ["video", WEBM, "-o", str(tmp_path / "v.mp4"), f"--cluster={address}"]
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"the Ray cluster at '{address}'" in err and message in err, err
            assert "RAY_AUTH_MODE=token" in err
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")  # the head's token is this machine's: connect in token mode
    loader.reset_cache()
    ray_api.authenticate(address)
    assert os.environ["RAY_AUTH_MODE"] == "token"
    assert not (tmp_path / "v.mp4").exists()


def zoom_job(tmp_path, name, **overrides):
    return job_at(tmp_path, name, dict(command="zoom", noise=True, size="32x32", frames=49, interpolate=4, zoom="1.05",
                                       angle="0.5", seed=5, frames_dir=str(tmp_path / (name + "-frames")), **TINY),
                  **overrides)


@pytest.mark.parametrize("loop", [False, True])
def test_zoom_in_betweens_on_workers_equal_a_single_render(tmp_path, pool, lite0, loop):
    """One worker dreams every 4th frame; the frames between go to whichever worker is free as soon as their
    dreamed frames are kept, each segment of the output encoded apart: the file equals a single render's, frame
    for frame, decoded (the same segments, encoded the same way), and so do the PNG frames. A loop's last
    segment crosses the wrap into frame 0."""
    frames = 28 if loop else 49  # two segments either way: 0-24 and 25-
    single = zoom_job(tmp_path, "single.mp4", frames=frames, loop=loop)
    runner.render(single, progress=False, model=lite0)
    job = zoom_job(tmp_path, "cluster.mp4", frames=frames, loop=loop, export_schedules=str(tmp_path / "s.csv"))
    placed = len(pool.placed)
    seen = []
    spans = cluster.render_zoom(job, pool=pool, progress=False, on_progress=lambda done, total: seen.append(done))
    assert spans == [range(0, 25), range(25, frames)]
    keys = 8 if loop else 13  # a loop's chain ends on frame 0 again
    assert seen[-1] == keys + frames
    np.testing.assert_array_equal(pngs(job.frames_dir), pngs(single.frames_dir))
    np.testing.assert_array_equal(decoded(job.output), decoded(single.output))
    a, b = media.probe_video(single.output), media.probe_video(job.output)
    assert (b.n_frames, b.fps, b.duration) == (a.n_frames, a.fps, a.duration) == (frames, 24.0, b.duration)
    assert_exact(job.output, frames, 24)
    workers = dict(pool.placed[placed:])
    assert workers["frames 0-24"] != workers["the dreamed frames"]  # made while the chain went on elsewhere
    assert len((tmp_path / "s.csv").read_text().splitlines()) == 1 + frames
    assert runner.record_path(Path(job.output)).is_file() and not (tmp_path / "cluster.mp4.zoomdream").exists()


def test_a_killed_zoom_worker_resumes_the_chain_without_dreaming_kept_frames_again(tmp_path, pool, lite0):
    job = zoom_job(tmp_path, "killed.mp4", frames=97, size="48x48", steps=2)
    keys = tmp_path / "killed.mp4.zoomdream" / "keys"
    kept, later = {}, {}

    def files(count):  # a frame written again is a new file (written beside it, then renamed over it)
        return {i: os.stat(media.frame_path(keys / "frames", i)).st_ino for i in range(count)}

    def kill_the_chain(done, total):
        chain = dict(pool.placed)["the dreamed frames"]
        if kept:
            later.update(files(len(kept)))  # the last call comes once every task is done, before the join
        elif (keys / "state.json").is_file() and pool.pids[chain] is not None:
            count = json.loads((keys / "state.json").read_text())["done"]  # counts only frames whole on disk
            if 2 <= count < 25:
                kept.update(files(count))
                os.kill(pool.pids[chain], signal.SIGKILL)  # the worker dreaming the chain dies
                pool.pids[chain] = None

    cluster.render_zoom(job, pool=pool, progress=False, on_progress=kill_the_chain)
    assert kept, "the chain's worker was not killed mid-chain"
    assert later == kept  # Ray restarted the worker, and the chain went on from its kept frames
    pool.pids = pool.ray.get([a.pid.remote() for a in pool.actors])
    single = zoom_job(tmp_path, "single.mp4", frames=97, size="48x48", steps=2)
    runner.render(single, progress=False, model=lite0)
    np.testing.assert_array_equal(pngs(job.frames_dir), pngs(single.frames_dir))
    np.testing.assert_array_equal(decoded(job.output), decoded(single.output))


def test_a_batch_hands_out_the_longest_job_first(tmp_path, pool):
    """A loop's settings' cost(): width x height x steps over the dreamed frames; a zoom's keyframed steps count
    frame by frame, and with --interpolate 4 only every 4th frame is dreamed."""
    sizes = {"small": dict(frames=4), "wide": dict(size="48x32", frames=6), "keyed": dict(frames=12, interpolate=4),
             "steps": dict(frames=6, steps="0:(1), 5:(4)")}
    jobs = [zoom_job(tmp_path, f"{name}.mp4", frames_dir=None, **{"interpolate": 1, **values})
            for name, values in sizes.items()]
    checked = {name: cluster.check(job) for name, job in zip(sizes, jobs)}
    work = {name: settings.cost() for name, (_, settings, _) in checked.items()}
    assert work == {"small": 4 * 32 * 32, "wide": 6 * 48 * 32, "keyed": 3 * 32 * 32, "steps": 15 * 32 * 32}
    placed = len(pool.placed)
    cluster.render_jobs(jobs, names=list(sizes), pool=pool, progress=False)
    assert [name for name, _ in pool.placed[placed:]] == ["steps", "wide", "small", "keyed"]
    assert all(os.path.isfile(job.output) for job in jobs)


def test_zoom_on_the_command_line_makes_its_in_betweens_on_the_workers(tmp_path, pool, monkeypatch, capsys):
    monkeypatch.setattr(driver, "open_pool", lambda *args: Borrowed(pool))
    out = tmp_path / "cli.mp4"
    placed = len(pool.placed)
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in TINY.items()]
    assert main(["zoom", "--noise", "--size", "32x32", "--frames", "12", "--interpolate", "4", "-o", str(out),
                 *flags, "--cluster"]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    assert [name for name, _ in pool.placed[placed:]] == ["the dreamed frames", "frames 0-11"]
    assert media.probe_video(out).n_frames == 12 and runner.record_path(out).is_file()


def test_ctrl_c_stops_a_cluster_zoom_and_resume_keeps_what_was_made(tmp_path, pool, lite0):
    job = zoom_job(tmp_path, "cut.mp4", frames=121, size="48x48", steps=2)
    work = tmp_path / "cut.mp4.zoomdream"
    pids = pool.ray.get([actor.pid.remote() for actor in pool.actors])  # now: a worker may have restarted

    def interrupt(done, total):
        if any(work.glob("stream-*.mp4")):  # a segment is made
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cluster.render_zoom(job, pool=pool, progress=False, on_progress=interrupt)
    assert pool.actors == [] and not (tmp_path / "cut.mp4").exists()
    for pid in pids:  # ray.kill returns at once: a worker holds its folder's lock until it ends
        wait_for(lambda: not alive(pid), seconds=10, what=f"worker {pid} to end")
    with pytest.raises(ZoomdreamError, match="add --resume"):
        cluster.render_zoom(job, progress=False)
    made = {path.name for path in work.glob("stream-*.mp4")}  # segments made before the stop are kept as they are
    assert made
    inodes = {name: os.stat(work / name).st_ino for name in made}
    seen = []

    def look(done, total):
        seen.append({name: os.stat(work / name).st_ino for name in made})

    with cluster.Pool(workers=2) as fresh:
        cluster.render_zoom(replace(job, resume=True), pool=fresh, progress=False, on_progress=look)
    assert seen[-1] == inodes
    single = zoom_job(tmp_path, "single.mp4", frames=121, size="48x48", steps=2)
    runner.render(single, progress=False, model=lite0)
    np.testing.assert_array_equal(pngs(job.frames_dir), pngs(single.frames_dir))
    np.testing.assert_array_equal(decoded(job.output), decoded(single.output))


@pytest.mark.parametrize("stop_after", [6, 8, 10])
def test_a_piece_keeps_its_stream_as_segments_and_resumes_exactly(tmp_path, lite0, interrupt_after, stop_after):
    """With --interpolate 2 the stream's last frame (7) is made from frames 6 and 8: a stop once the stream's
    segment is closed resumes from frame 6, kept lossless, and makes frame 7 again without encoding it twice."""
    job = video_job(tmp_path, "piece.mp4", interpolate=2)
    whole = runner.render_piece(job, range(0, 12), tmp_path / "whole", progress=False, model=lite0,
                                stream=range(0, 8))
    with pytest.raises(KeyboardInterrupt):
        runner.render_piece(job, range(0, 12), tmp_path / "cut", progress=False, model=lite0, stream=range(0, 8),
                            sinks=(interrupt_after(stop_after),))
    cut = runner.render_piece(job, range(0, 12), tmp_path / "cut", progress=False, model=lite0, stream=range(0, 8))
    names = [sorted(p.name for p in folder.glob("frames/*.png")) for folder in (whole, cut)]
    assert names[0] == names[1] == [media.frame_path("", t).name for t in range(6, 12)]
    np.testing.assert_array_equal(pngs(cut / "frames"), pngs(whole / "frames"))
    assert sorted(p.name for p in cut.glob("segments/*.mp4")) == ["00000000.mp4"]
    np.testing.assert_array_equal(decoded(cut / "segments" / "00000000.mp4"),
                                  decoded(whole / "segments" / "00000000.mp4"))
    assert len(decoded(whole / "segments" / "00000000.mp4")) == 8


def test_pieces_join_into_a_gif_from_their_segments(tmp_path, lite0):
    job = video_job(tmp_path, "joined.gif")
    pieces = [(0, 6), (4, 12)]
    streams = [frames for frames, _, faded in runner.join_parts(pieces) if not faded]
    folders = [runner.render_piece(job, range(*span), tmp_path / str(k), warmup=0, progress=False, model=lite0,
                                   stream=stream) for k, (span, stream) in enumerate(zip(pieces, streams))]
    runner.join_pieces(job, folders, model=lite0)
    assert media.probe_video(job.output).n_frames == 12


DRIVER = """
import time, ray
from zoomdream.cluster import ray_api
ray_api.connect(ray, None)
print("connected", flush=True)
time.sleep(600)
"""


def test_a_driver_killed_with_9_takes_its_local_cluster_along(tmp_path):
    """Every process a driver's local cluster started ends with the driver, however it ends, and their ports
    close: Ray's DashboardAgent and RuntimeEnvAgent stayed 60-120 s after a kill -9, listening (they report
    the raylet's death to the GCS that died with it), until a watchdog ended them."""
    pytest.importorskip("ray", reason="the cluster extra is not installed: pip install '.[cluster]'")
    psutil = pytest.importorskip("psutil")  # a dependency of Ray's
    log = tmp_path / "driver.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    with open(log, "wb") as out:
        driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: b"connected" in log.read_bytes() or driver.poll() is not None, what="the local cluster")
        assert driver.poll() is None, log.read_text()
        tree = psutil.Process(driver.pid)

        def agents() -> set[str]:
            names = set()
            for p in tree.children(recursive=True):
                try:
                    names.add(p.cmdline()[0])  # the title Ray gives them, padded with empty arguments
                except (psutil.Error, IndexError):  # ended meanwhile
                    pass
            return names & {"ray::DashboardAgent", "ray::RuntimeEnvAgent"}

        wait_for(lambda: len(agents()) == 2, seconds=60, what="Ray's agents")
        processes = tree.children(recursive=True)
        ports = set()
        for p in processes:
            try:
                ports |= {(c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="tcp")
                          if c.status == psutil.CONN_LISTEN}
            except psutil.Error:  # ended meanwhile
                pass
        assert ports  # the agents listen
    finally:
        driver.kill()
        driver.wait()

    def gone(p) -> bool:
        try:
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def closed(ip: str, port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1" if ip in ("0.0.0.0", "::") else ip, port), timeout=1).close()
        except OSError:
            return True
        return False

    def alive() -> list:
        left = []
        for p in processes:
            try:
                if not gone(p):
                    left.append((p.pid, p.cmdline()[:2]))
            except psutil.Error:
                pass
        return left

    try:
        wait_for(lambda: all(map(gone, processes)), seconds=30, what="the cluster's processes to end")
    except AssertionError:
        raise AssertionError(f"still running 30 s after the driver's kill: {alive()}") from None
    wait_for(lambda: all(closed(*where) for where in ports), seconds=10, what=f"the ports {sorted(ports)} to close")
