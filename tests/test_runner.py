"""The runner and its sinks: frames seen in memory, locks, damaged resume state, frame ranges joined into one
render, and the guide in every loop."""
import json
import os

import numpy as np
import pytest

from conftest import job_at
from zoomdream import media, runner
from zoomdream.config import make_job
from zoomdream.errors import ZoomdreamError
from zoomdream.sinks import MemorySink
from zoomdream.store import FrameStore

DATA = os.path.join(os.path.dirname(__file__), "data")
SAMPLES = os.path.join(os.path.dirname(__file__), "..", "samples")
WEBM = os.path.join(DATA, "big_buck_bunny_432_433.webm")  # 24 fps, Vorbis audio


def zoom_job(tmp_path, name="zoom.mp4", **overrides):
    return job_at(tmp_path, name, dict(command="zoom", noise=True, size="48x32", frames=4, octaves=1, steps=2, tile=64,
                                       layers="block5", seed=5, zoom="1.1", angle="3*sin(t)"), **overrides)


def video_job(tmp_path, name="video.mp4", **overrides):
    return job_at(tmp_path, name, dict(command="video", input=WEBM, max_size=64, octaves=1, steps=2, tile=64,
                                       layers="block5", duration=0.25), **overrides)


def stored(directory):
    return [media.read_image(p) for p in media.list_frames(directory)]


def test_memory_sink_sees_every_frame_in_order(tmp_path, lite0):
    memory = MemorySink()
    job = zoom_job(tmp_path, frames_dir=str(tmp_path / "f"))
    runner.render(job, progress=False, model=lite0, sinks=(memory,))
    assert list(memory.frames) == [0, 1, 2, 3]
    for kept, seen in zip(stored(tmp_path / "f"), memory.frames.values()):
        np.testing.assert_array_equal(kept, seen)


def test_second_render_into_the_same_folder_is_refused(tmp_path):
    first = FrameStore(tmp_path / "work")
    first.open("abc", range(0, 3), resume=False)
    second = FrameStore(tmp_path / "other", frames_dir=tmp_path / "work" / "frames")
    with pytest.raises(ZoomdreamError, match="another render is using"):
        second.open("abc", range(0, 3), resume=False)
    first.release()
    second.open("abc", range(0, 3), resume=False)  # the lock goes with its holder
    second.release()


@pytest.mark.parametrize("state", ["{}", "not json", '{"settings": "x", "span": [0, 4], "done": -1, "carry": {}}',
                                   '{"settings": "x", "span": [0, 4], "done": 9, "carry": {}}'])
def test_damaged_resume_state_is_one_line(tmp_path, state):
    store = FrameStore(tmp_path / "work")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "state.json").write_text(state)
    with pytest.raises(ZoomdreamError, match="state.json is damaged"):
        store.open("x", range(0, 4), resume=True)


def test_missing_resume_frame_names_it(tmp_path):
    store = FrameStore(tmp_path / "work")
    store.open("x", range(0, 4), resume=False)
    store.keep(0, np.zeros((8, 8, 3), np.uint8), {"rng": None, "source": {}})
    store.keep(1, np.zeros((8, 8, 3), np.uint8), {"rng": None, "source": {}})
    store.release()
    os.remove(media.frame_path(tmp_path / "work" / "frames", 1))
    with pytest.raises(ZoomdreamError, match="frame 1 is missing"):
        FrameStore(tmp_path / "work").open("x", range(0, 4), resume=True)


def test_zoom_pieces_join_to_the_whole_render(tmp_path, lite0):
    whole = zoom_job(tmp_path, "whole.mp4", frames_dir=str(tmp_path / "whole"))
    runner.render(whole, progress=False, model=lite0)
    job = zoom_job(tmp_path, "joined.mp4")
    a = runner.render_piece(job, range(0, 2), tmp_path / "a", progress=False, model=lite0)
    with pytest.raises(ZoomdreamError, match="needs frame 1"):
        runner.render_piece(job, range(2, 4), tmp_path / "x", progress=False, model=lite0)
    b = runner.render_piece(job, range(2, 3), tmp_path / "b", start_from=a, progress=False, model=lite0)
    c = runner.render_piece(job, range(3, 4), tmp_path / "c", start_from=b, progress=False, model=lite0)
    np.testing.assert_array_equal(np.stack(stored(a / "frames") + stored(b / "frames") + stored(c / "frames")),
                                  np.stack(stored(tmp_path / "whole")))
    with pytest.raises(ZoomdreamError, match="needs frame 0 next"):
        runner.join_pieces(job, [b, a, c], model=lite0)
    memory = MemorySink()
    runner.join_pieces(job, [a, b, c], model=lite0, sinks=(memory,))
    frames = np.stack(stored(tmp_path / "whole"))
    np.testing.assert_array_equal(np.stack([memory.frames[i] for i in range(4)]), frames)
    # Each piece is encoded on its own and the streams joined: as close to the frames as one encode of them.
    joined = np.stack(list(media.read_video(job.output))).astype(int)
    reference = np.stack(list(media.read_video(whole.output))).astype(int)
    assert joined.shape == reference.shape
    assert np.abs(joined - frames).mean() < 1.5 * np.abs(reference - frames).mean() + 0.5


def test_video_pieces_join_with_audio_and_warm_up(tmp_path, lite0):
    whole = video_job(tmp_path, "whole.mp4", frames_dir=str(tmp_path / "whole"))
    runner.render(whole, progress=False, model=lite0)
    job = video_job(tmp_path, "joined.mp4")
    a = runner.render_piece(job, range(0, 3), tmp_path / "a", progress=False, model=lite0)
    b = runner.render_piece(job, range(3, 6), tmp_path / "b", start_from=a, progress=False, model=lite0)
    np.testing.assert_array_equal(np.stack(stored(a / "frames") + stored(b / "frames")),
                                  np.stack(stored(tmp_path / "whole")))
    runner.join_pieces(job, [a, b], model=lite0)
    info = media.probe_video(job.output)
    assert info.has_audio and info.fps == pytest.approx(24, abs=0.01)
    assert sum(1 for _ in media.read_video(job.output)) == 6

    # Without the piece before it, frame 3 starts from warm-up frames: close to, not equal to, the whole render.
    warm = runner.render_piece(job, range(3, 6), tmp_path / "warm", warmup=2, progress=False, model=lite0)
    cold = runner.render_piece(job, range(3, 6), tmp_path / "cold", warmup=0, progress=False, model=lite0)
    reference = np.stack(stored(tmp_path / "whole")[3:]).astype(int)
    warm_error = np.abs(np.stack(stored(warm / "frames")) - reference).mean()
    cold_error = np.abs(np.stack(stored(cold / "frames")) - reference).mean()
    assert warm_error < cold_error


def test_piece_resumes_on_its_own(tmp_path, lite0, interrupt_after):
    job = zoom_job(tmp_path, "z.mp4")
    reference = runner.render_piece(job, range(0, 4), tmp_path / "ref", progress=False, model=lite0)
    with pytest.raises(KeyboardInterrupt):
        runner.render_piece(job, range(0, 4), tmp_path / "cut", progress=False, model=lite0,
                            sinks=(interrupt_after(2),))
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert state["done"] == 2
    runner.render_piece(job, range(0, 4), tmp_path / "cut", progress=False, model=lite0)
    np.testing.assert_array_equal(np.stack(stored(tmp_path / "cut" / "frames")),
                                  np.stack(stored(reference / "frames")))


@pytest.mark.parametrize("command", ["zoom", "video"])
def test_guide_changes_the_frames(tmp_path, lite0, command):
    make = zoom_job if command == "zoom" else video_job
    plain = make(tmp_path, "plain.mp4", frames_dir=str(tmp_path / "plain"), steps=4)
    guided = make(tmp_path, "guided.mp4", frames_dir=str(tmp_path / "guided"), steps=4,
                  guide=os.path.join(SAMPLES, "coffee.png"))
    for job in (plain, guided):
        runner.render(job, progress=False, model=lite0)
    a, b = np.stack(stored(tmp_path / "plain")), np.stack(stored(tmp_path / "guided"))
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b).mean() > 2


def test_renamed_key_loads_with_a_warning(capsys):
    job = make_job(dict(command="zoom", interpolation="cubic"))
    assert job.easing == "cubic"
    assert "setting 'interpolation' is now 'easing'" in capsys.readouterr().err
    with pytest.raises(ZoomdreamError, match="job schema 99"):
        make_job(dict(command="zoom", schema=99))


def test_pieces_must_cover_the_render_and_start_after_a_dreamed_frame(tmp_path, lite0):
    job = zoom_job(tmp_path, "z.mp4", frames=6, interpolate=2)
    a = runner.render_piece(job, range(0, 3), tmp_path / "a", progress=False, model=lite0)
    with pytest.raises(ZoomdreamError, match="the pieces end at frame 2 of the render's 6"):
        runner.join_pieces(job, [a], model=lite0)
    b = runner.render_piece(job, range(0, 4), tmp_path / "b", progress=False, model=lite0)
    with pytest.raises(ZoomdreamError, match="right after a dreamed frame"):
        runner.render_piece(job, range(4, 6), tmp_path / "c", start_from=b, progress=False, model=lite0)
    whole = zoom_job(tmp_path, "whole.mp4", frames=6, interpolate=2, frames_dir=str(tmp_path / "whole"))
    runner.render(whole, progress=False, model=lite0)
    c = runner.render_piece(job, range(3, 6), tmp_path / "c", start_from=a, progress=False, model=lite0)
    np.testing.assert_array_equal(np.stack(stored(a / "frames") + stored(c / "frames")),
                                  np.stack(stored(tmp_path / "whole")))


def test_a_sink_in_a_with_block_closes_or_aborts(tmp_path):
    """A sink is a context manager: closed when the block ends, aborted (no half-written file) when it raises."""
    from zoomdream.sinks import EncoderSink

    frame = np.zeros((16, 16, 3), np.uint8)
    with EncoderSink(tmp_path / "whole.mp4", 24) as sink:
        sink.write(0, frame)
    assert sum(1 for _ in media.read_video(tmp_path / "whole.mp4")) == 1
    with pytest.raises(KeyboardInterrupt), EncoderSink(tmp_path / "cut.mp4", 24) as sink:
        sink.write(0, frame)
        raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["whole.mp4"]


def test_frames_dir_gets_each_frame_before_the_store_counts_it(tmp_path, lite0):
    """A kill between the two must not leave a --frames-dir frame to the resume's replay, which decodes the
    store's H.264 segments (lossy): the lossless copy is written first."""
    from zoomdream.sinks import FramesDirSink
    from zoomdream.store import SegmentStore

    order = []

    class Frames(FramesDirSink):
        def write(self, index, frame):
            order.append(("frames-dir", index))
            super().write(index, frame)

    class Store(SegmentStore):
        def keep(self, index, frame, carry, restartable=True):
            order.append(("store", index))
            super().keep(index, frame, carry, restartable)

    job, source, _ = runner.prepare(zoom_job(tmp_path), lite0)
    store = Store(tmp_path / "work")
    try:
        runner.run(source, [Frames(tmp_path / "frames")], seed=0, store=store, settings="s", progress=False)
    finally:
        store.release()
    assert order == [(kind, t) for t in range(4) for kind in ("frames-dir", "store")]
