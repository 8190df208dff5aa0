"""The studio's Live tab in Debian's Chromium with a fake webcam: a Y4M made at test time from the clips in
tests/data (the test card, then Big Buck Bunny: two scenes that differ everywhere) that Chromium plays as the
camera. The tab receives dreamed frames that differ from the camera's and follow it; a slider change shows in
the frames after it; a bad layers value is a notice and changes nothing; a look loaded from a job file acts on
the next frame; Stop ends the stream; a second visitor
is told to wait, dreams once the first stops, and frees the engine by leaving. Each wait is for an event (a
frame dreamed, a line shown), never a fixed time. A screenshot is kept in test-artifacts/studio-live.png."""
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_for
from test_studio_browser import ARTIFACTS, CHROMIUM, FLAGS

sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

DATA = Path(__file__).resolve().parent / "data"
STATUS = "#live-status textarea, #live-status input"
SCENES: dict = {}  # the camera's scenes, as its first and last frames


@pytest.fixture(scope="module")
def camera(tmp_path_factory) -> Path:
    """The fake webcam: the test card (2 s) then Big Buck Bunny (1 s), 256x144 at 25 fps, as Y4M (yuv420p,
    which Chromium's fake capture reads), looped by Chromium."""
    from zoomdream.media.ffmpeg import ffmpeg_exe

    path = tmp_path_factory.mktemp("camera") / "camera.y4m"
    scale = "scale=256:144:force_original_aspect_ratio=increase,crop=256:144,fps=25,format=yuv420p,setsar=1"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(DATA / "example.mp4"), "-i",
                    str(DATA / "big_buck_bunny_432_433.webm"), "-filter_complex",
                    f"[0:v]{scale}[a];[1:v]{scale}[b];[a][b]concat=n=2:v=1[v]", "-map", "[v]", "-f", "yuv4mpegpipe",
                    str(path)], check=True)
    return path


@pytest.fixture
def live(studio, monkeypatch):
    """The studio's live engine, each dreamed frame recorded: (visitor, camera frame at the dream's size, dream,
    the live controls' look it was dreamed with). The engine is left free for the next test."""
    dreams = studio[0].live
    frames, lock = [], threading.Lock()
    dream = dreams.frame

    def recorded(visitor, image):
        made, line = dream(visitor, image)
        if made is not None:
            with lock:
                frames.append((visitor, *dreams.latest, dreams.controls.last))
        return made, line

    monkeypatch.setattr(dreams, "frame", recorded)
    dreams.frames = frames
    yield dreams
    dreams.stop()
    assert not studio[0].studio.busy.locked()


@contextmanager
def browser(camera: Path):
    """Headless Debian Chromium whose webcam plays ``camera`` (no permission prompt)."""
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS + [
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"])
        try:
            yield chromium
        finally:
            chromium.close()


def live_page(chromium, url: str):
    """A visitor: a page of its own (its own Gradio session) on the live tab."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.get_by_role("tab", name="live").click()
    page.wait_for_selector("#live-start")
    return page


def wait_line(page, start: str, timeout: float = 120_000) -> str:
    """Wait until the live line starts with ``start``; returns it (``timeout`` only ends a hung test)."""
    status = page.locator(STATUS).first
    return page.wait_for_function("([s, start]) => s.value.startsWith(start) && s.value",
                                  arg=[status.element_handle(), start], timeout=timeout).json_value()


def set_slider(page, slider: str, value: str) -> None:
    """Type ``value`` into a slider's number box, as a visitor may instead of dragging."""
    box = page.locator(f"{slider} input[type=number]")
    box.fill(value)
    box.press("Enter")


def scene(frame: np.ndarray, camera: Path) -> int:
    """Which of the camera's two scenes ``frame`` shows (0: the test card, 1: the bunny), either way round (the
    page mirrors the webcam as a mirror does)."""
    if camera not in SCENES:
        from zoomdream import media

        frames = list(media.read_video(camera))
        SCENES[camera] = (frames[0], frames[-1])
    return int(np.argmin([min(difference(frame, first), difference(frame, first[:, ::-1]))
                          for first in SCENES[camera]]))


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b).mean())


def test_the_live_tab_dreams_the_webcam_and_follows_it_and_the_strength_acts_on_the_next_frame(studio, live,
                                                                                            camera, tmp_path):
    with browser(camera) as chromium:
        page = live_page(chromium, studio[1])
        set_slider(page, "#live-step-size", "0.08")  # a strong dream, set before Start
        wait_line(page, "step size 0.08 from the next frame")
        page.click("#live-start")
        wait_for(lambda: len({scene(frame, camera) for _, frame, *_ in live.frames[4:]}) == 2, 120,
                 "dreamed frames of both scenes")
        line = wait_line(page, "dreaming: frame ")
        assert " fps · latency " in line, line
        page.wait_for_function("() => { const i = document.querySelector('#live-dream img'); "
                               "return i && i.complete && i.naturalWidth === 256; }")  # a dream shown, 256x144
        dreamed = live.frames[4:]  # past the first frames, which start from the camera's own
        # Differ from the camera's, and follow it: each dream is nearer its own camera frame than the other scene's.
        for _, frame, dream, _ in dreamed:
            own = difference(dream, frame)
            other = min(difference(dream, other) for _, other, *_ in dreamed
                        if scene(other, camera) != scene(frame, camera))
            assert 6 < own < other / 2, (own, other)
        before = np.mean([difference(dream, frame) for _, frame, dream, _ in dreamed])
        wait_for(lambda: [scene(frame, camera) for _, frame, *_ in live.frames[-4:]] == [0] * 4, 120,
                 "four dreams of the test card in a row")  # the screenshot shows one scene on both sides
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "studio-live.png"))  # docs/images/studio-live.jpg
        # Strength 0: the frames after it are the camera's, carried: the last dream fades by 1 - (1 - smooth) x
        # (1 - blend) a frame (0.925 at the defaults: 14 frames left a third of it), 30 frames leave a tenth.
        set_slider(page, "#live-step-size", "0")
        wait_for(lambda: sum(look.dream.step_size == 0 for *_, look in live.frames) >= 30, 120,
                 "30 frames at strength 0")
        after = [difference(dream, frame) for _, frame, dream, look in live.frames if look.dream.step_size == 0][-3:]
        assert max(after) < before / 3, (after, before)
        assert all(look.dream.step_size == 0.08 for *_, look in dreamed)  # nothing changed before it
        # A bad layers value: a notice, and the engine's layers as they were.
        page.locator("#live-layers textarea, #live-layers input").first.fill("block99:1")
        page.locator("#live-layers textarea, #live-layers input").first.press("Enter")
        page.locator(".toast-body").filter(has_text="unknown layer 'block99'").wait_for(timeout=30_000)
        made = len(live.frames)
        wait_for(lambda: len(live.frames) > made, 30, "a frame after the bad layers")
        assert live.frames[-1][3].layers is None
        # A look loaded from a job file: its live settings from the next frame.
        look = tmp_path / "look.job.toml"
        look.write_text('command = "zoom"\nstep_size = 0.05\noctaves = 2\nlayers = "block5:1"\n')
        with page.expect_file_chooser() as chooser:
            page.click("#live-preset")
        chooser.value.set_files(str(look))  # (its line "step size, layers from the look..." may be overwritten
        # by the next frame's figures before the page paints it: the frames are what count)
        wait_for(lambda: live.frames[-1][3].dream.step_size == 0.05 and live.frames[-1][3].layers == "block5:1", 120,
                 "a frame with the look's settings")
        assert live.frames[-1][3].dream.octaves == 2
        for control, shown in (("#live-step-size", "0.05"), ("#live-octaves", "2")):
            box = page.locator(f"{control} input[type=number]")  # the controls moved to show the look
            wait_for(lambda: box.input_value() == shown, 30, f"{control} showing {shown}")
        assert page.locator("#live-layers textarea, #live-layers input").first.input_value() == "block5:1"
        set_slider(page, "#live-blend", "0.3")
        wait_for(lambda: live.frames[-1][3].blend == 0.3, 60, "a frame with blend 0.3")
        # Stop ends the stream: the camera's own stream stops, the engine is free, and no frame comes after it.
        page.click("#live-stop")
        assert wait_line(page, "stopped after ").startswith("stopped after ")
        wait_for(lambda: live.owner is None, 30, "the engine freed")
        made = len(live.frames)
        set_slider(page, "#live-steps", "2")
        wait_line(page, "steps 2 from the next frame")  # a round trip to the server after Stop
        assert len(live.frames) == made and live.owner is None


def test_a_second_visitor_is_told_to_wait_and_dreams_once_the_first_stops_then_leaving_frees_it(studio, live,
                                                                                                camera):
    with browser(camera) as chromium:
        first, second = live_page(chromium, studio[1]), live_page(chromium, studio[1])
        first.click("#live-start")
        wait_line(first, "dreaming: frame ")
        second.click("#live-start")
        assert wait_line(second, "waiting: another visitor is dreaming").endswith("yours starts when they stop")
        assert {visitor for visitor, *_ in live.frames} == {live.owner}  # only the first's frames are dreamed
        first.click("#live-stop")
        wait_line(second, "dreaming: frame ")  # its stream went on: it takes the engine at its next frame
        assert len({visitor for visitor, *_ in live.frames}) == 2
        second.close(run_before_unload=True)  # leaving frees the engine (Gradio's unload)
        wait_for(lambda: live.owner is None and not studio[0].studio.busy.locked(), 30, "the engine freed")


def test_a_frame_that_fails_frees_the_engine_and_says_why_in_one_line(tmp_path, monkeypatch):
    """A dream that cannot be made (here the model) must not keep the studio's one-render lock: the renders
    would wait for ever behind a page that shows an error."""
    from zoomdream.errors import ZoomdreamError
    from zoomdream.studio import Studio
    from zoomdream.studio.live_session import LiveDreams

    studio = Studio(tmp_path)

    def no_model(job):
        raise ZoomdreamError("weights file 'x.h5' is not found (give an existing file)")

    monkeypatch.setattr(studio, "model", no_model)
    dreams = LiveDreams(studio)
    dream, line = dreams.frame("visitor", np.zeros((144, 256, 3), np.uint8))
    assert (dream, line) == (None, "zoomdream: error: weights file 'x.h5' is not found (give an existing file)")
    assert not studio.busy.locked()
    # Stopped: the page keeps that line (the next frames say nothing) until the visitor presses Start again.
    assert dreams.frame("visitor", np.zeros((144, 256, 3), np.uint8)) == (None, None)
    dreams.start("visitor")
    assert dreams.frame("visitor", np.zeros((144, 256, 3), np.uint8))[1].startswith("zoomdream: error: weights")


def test_a_visitor_whose_first_frame_is_still_compiling_is_not_taken_over_and_stop_holds(tmp_path):
    """The stale rule (no frame for IDLE_S) must not pass the engine on while the owner's frame is being dreamed:
    a first frame compiles the step, seconds on a loaded CPU. Here the clock jumps past IDLE_S mid-dream. After
    Stop, a late frame of the same visitor must not claim the engine again (nothing would free it)."""
    from zoomdream.studio import Studio
    from zoomdream.studio.live_session import IDLE_S, WAITING, LiveDreams

    now = [0.0]
    dreams = LiveDreams(Studio(tmp_path), clock=lambda: now[0])
    answers = []

    class Slow:
        settings = type("S", (), {"size": (16, 16)})

        def prepare(self, camera, t, arrived):
            return camera

        def dreamed(self, camera):
            now[0] += 10 * IDLE_S
            answers.append(dreams.frame("second", np.zeros((16, 16, 3), np.uint8)))
            return camera

    dreams._source = lambda image: Slow()
    dream, line = dreams.frame("first", np.zeros((16, 16, 3), np.uint8))
    assert answers == [(None, WAITING)] and dream is not None and line.startswith("dreaming: frame 1 ")
    refused = next(dreams.studio.render(None))  # a render asked for meanwhile is told who holds the engine
    assert refused.message == "zoomdream: error: the Live tab is dreaming a camera (stop it there, or wait for it to end)"
    # Stop: a frame of theirs still on its way (sent before the page's stream ended) does not take it back.
    assert dreams.stop("first") == "stopped after 1 frame"
    assert dreams.frame("first", np.zeros((16, 16, 3), np.uint8)) == (None, None)
    assert dreams.owner is None and not dreams.studio.busy.locked()
