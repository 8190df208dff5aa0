"""The studio through Gradio's Python client: every form field is a Job setting, a render returns its video and
a job.toml that `zoomdream render` reproduces, Stop halts within a frame and Resume finishes, bad input is the
CLI's one line, and the motion preview, curves, layer browser and job loading work."""
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import answers, assert_exact, free_port, wait_for
from zoomdream import media, runner
from zoomdream.config import load_toml, make_job
from zoomdream.cli import error_line
from zoomdream.errors import ZoomdreamError
from zoomdream.store import read_state
from zoomdream.studio import Progress, Studio, form_defaults, form_fields, job_from_form, keep_upload

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

SAMPLE = str(Path(__file__).resolve().parent.parent / "samples" / "chelsea.png")


@pytest.fixture(scope="module")
def client(studio):
    return Client(studio[1], verbose=False)


def zoom_form(**values):
    """The zoom form's values in its order: a tiny noise zoom unless told otherwise."""
    form = form_defaults("zoom")
    form.update({**dict(noise=True, size="64x64", frames=4, octaves=1, steps=2, tile=64, precision="float32"),
                 **values})
    return [form[name] for name in form_fields("zoom")]


def shown(output):
    """A component's value as the client returns it (an update that also shows or hides it is a dict)."""
    return output.get("value") if isinstance(output, dict) else output


def final(job):
    wait_for(job.done, what="the render's end")
    return job.outputs()[-1]


def showing_frames(job) -> bool:
    """Whether a submitted render's progress line counts frames (it runs, past its model's loading)."""
    return "frame " in str(job.outputs()[-1:])


def test_a_tiny_zoom_returns_its_video_and_a_job_file_that_reproduces_it(client, lite0, tmp_path):
    status, preview, video, image, files = client.predict(".mp4", *zoom_form(), api_name="/render_zoom")
    assert status.startswith("done: 4 frames"), status
    frames = list(media.read_video(shown(video)))
    assert len(frames) == 4 and frames[0].shape == (64, 64, 3)
    assert preview is not None and shown(image) is None
    job_file = next(f for f in files if f.endswith(".job.toml"))
    again = make_job({**load_toml(job_file), "output": str(tmp_path / "again.mp4")})  # `zoomdream render`
    runner.render(again, progress=False, model=lite0)
    for a, b in zip(frames, media.read_video(tmp_path / "again.mp4")):
        np.testing.assert_array_equal(a, b)


def test_stop_halts_within_one_frame_and_resume_finishes(client, studio):
    studio, before = studio[0].studio, studio[0].studio.progress
    job = client.submit(".mp4", *zoom_form(frames=40), api_name="/render_zoom")
    wait_for(lambda: job.done() or (studio.progress is not before and studio.progress.latest is not None
                                    and studio.progress.latest[0] >= 2), what="frame 2")
    made = studio.progress.latest[0] + 1
    studio.stop()  # what the Stop button calls, without the round trip's delay
    status = final(job)[0]
    assert status.startswith("stopped after frame"), status
    kept = int(status.split()[3])
    # frames 0..made-1 were shown; the next one may be in the writer and the one after in the dream: that
    # dream finishes, and no other starts
    assert made <= kept <= made + 2
    work = Path(studio.stopped.output + ".zoomdream")
    assert read_state(work)["done"] == kept
    status, _, video, _, _ = client.predict(api_name="/resume")
    assert status.startswith("done: 40 frames"), status
    assert studio.progress.kept == kept  # replayed at once: left out of the rate and the time left
    assert len(list(media.read_video(shown(video)))) == 40
    assert client.predict(api_name="/resume")[0].startswith("zoomdream: error: nothing to resume")


def test_the_stop_button_answers_while_a_render_runs(client):
    job = client.submit(".mp4", *zoom_form(frames=60), api_name="/render_zoom")
    wait_for(lambda: showing_frames(job), what="the first frame")
    assert client.predict(api_name="/stop") == "stopping after the frame in progress"
    assert final(job)[0].startswith("stopped after frame")


def test_a_render_whose_page_goes_away_stops_there_and_the_next_waits_for_it(lite0, tmp_path):
    studio = Studio(tmp_path, {("efficientnet-lite0", None, "float32"): lite0})
    job = studio.job("zoom", dict(noise=True, size="64x64", frames=100, octaves=1, steps=2, tile=64,
                                  precision="float32"), ".mp4")
    updates = studio.render(job, poll=0.01)
    while next(updates).frame is None:
        pass
    updates.close()  # what Gradio does when the browser tab closes mid-render
    after = list(studio.render(replace(job, output=str(tmp_path / "next.mp4"), frames=2)))
    assert after[0].message == "waiting for the stopped render to end its frame"
    assert after[-1].state == "done", after[-1].message
    kept = read_state(runner.work_folder(Path(job.output)))["done"]
    assert 0 < kept < 100 and studio.stopped == job  # stopped, not rendering on unseen, and left to Resume
    assert list(studio.resume())[-1].message.startswith("done: 100 frames")


def fetch(url: str) -> tuple[int, int]:
    """A file's declared length and the bytes that came (fewer: the server read a file cut short)."""
    import http.client
    import urllib.parse

    where = urllib.parse.urlparse(url)
    connection = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        connection.request("GET", f"{where.path}?{where.query}" if where.query else where.path)
        response = connection.getresponse()
        try:
            got = len(response.read())
        except http.client.IncompleteRead as e:
            got = len(e.partial)
        return int(response.getheader("content-length") or -1), got
    finally:
        connection.close()


@pytest.mark.parametrize("handed", ["array", "preview file"])
def test_the_latest_frame_is_never_rewritten_while_the_page_reads_it(studio, handed):
    """The page fetches each latest frame from Gradio's cache by URL. Handed a frame array (as it was), Gradio
    encoded it into a file named by its content and rewrote that file in place whenever the same frame came again
    (a render's last update repeats its last frame; a resume replays kept frames): fetches during a rewrite came
    short (the terminal's 70-line "h11 LocalProtocolError: Too little data for declared Content-Length", and a
    broken image). Handed a file of its own (Studio.preview), it copies the file atomically and never rewrites
    it. Here the same frame is handed over again and again while the page's URL is fetched."""
    import threading

    from gradio import processing_utils

    app, url = studio
    s = app.studio
    cache = str(s.workdir / "cache")  # inside the served work folder, as Gradio's own cache is served
    frame = np.random.default_rng(0).integers(0, 255, (360, 640, 3), np.uint8)

    def hand_over() -> str:  # what Gradio does with the value the page yields for the latest frame
        if handed == "array":
            return processing_utils.save_img_array_to_cache(frame, cache, format="jpeg")
        return processing_utils.save_file_to_cache(s.preview(frame.copy()), cache)

    path, done = hand_over(), threading.Event()

    def again():
        while not done.is_set():
            hand_over()

    thread = threading.Thread(target=again)
    thread.start()
    fetches = []
    try:
        while len(fetches) < 200 and not (fetches and fetches[-1][0] != fetches[-1][1]):
            fetches.append(fetch(f"{url}gradio_api/file={path}"))
    finally:
        done.set()
        thread.join()
    short = sum(declared != got for declared, got in fetches)
    if handed == "array":  # the race, reproduced (in about one fetch of two): Gradio's own handling of an array
        assert short == 1, fetches
    else:
        assert short == 0 and len(fetches) == 200 and all(declared > 0 for declared, _ in fetches)


def test_each_preview_is_a_file_of_its_own_and_old_ones_go(tmp_path):
    from zoomdream.studio import PREVIEWS_KEPT

    s = Studio(tmp_path)
    frames = [np.full((8, 8, 3), 16 * k, np.uint8) for k in range(PREVIEWS_KEPT + 3)]
    paths = [s.preview(f) for f in frames]
    assert len(set(paths)) == len(paths) and s.preview(frames[-1]) == paths[-1]  # the same frame: the same file
    last = os.stat(paths[-1])
    assert [Path(p).exists() for p in paths] == [False] * 3 + [True] * PREVIEWS_KEPT
    assert media.read_image(paths[-1]).shape == (8, 8, 3)
    s.preview(frames[0])
    assert os.stat(paths[-1]).st_mtime_ns == last.st_mtime_ns  # never written again


def test_resume_finds_the_render_kept_by_a_studio_stopped_mid_render(lite0, tmp_path):
    """Ctrl-C during a render, then `zoomdream studio` again: Resume continues the kept work (it said "nothing to
    resume": the stopped render was remembered only by the closed studio)."""
    models = {("efficientnet-lite0", None, "float32"): lite0}
    first = Studio(tmp_path, models)
    job = first.job("zoom", dict(noise=True, size="64x64", frames=30, octaves=1, steps=2, tile=64,
                                 precision="float32"), ".mp4")
    updates = first.render(job, poll=0.01)
    while next(updates).frame is None:
        pass
    first.stop()  # what Ctrl-C does to the studio's render
    assert list(updates)[-1].state == "stopped"
    kept = read_state(runner.work_folder(Path(job.output)))["done"]
    assert 0 < kept < 30
    again = Studio(tmp_path, models)  # the studio started again
    result = list(again.resume())
    assert result[-1].message.startswith("done: 30 frames"), result[-1].message
    assert again.progress.kept == kept and Path(job.output).is_file()
    assert_exact(job.output, 30, 24)  # the stop's short segment made 32 frames of 30 read back
    assert list(Studio(tmp_path, models).resume())[-1].message.startswith("zoomdream: error: nothing to resume")


def test_a_stopped_render_stays_for_resume_while_others_render(client, studio):
    job = client.submit(".mp4", *zoom_form(frames=40), api_name="/render_zoom")
    wait_for(lambda: showing_frames(job), what="the first frame")
    client.predict(api_name="/stop")
    assert final(job)[0].startswith("stopped after frame")
    form = form_defaults("image")
    form.update(input=handle_file(SAMPLE), max_size=64, octaves=1, steps=2, precision="float32")
    assert client.predict(".png", *[form[n] for n in form_fields("image")], api_name="/render_image")[0].startswith(
        "done: 1 frame")
    assert client.predict(api_name="/resume")[0].startswith("done: 40 frames")


def test_progress_leaves_the_frames_a_resume_replays_out_of_the_rate():
    clock = [1000.0]  # moved by hand: the test needs time to pass, not to wait for it
    progress = Progress(total=100, kept=50, clock=lambda: clock[0])
    frame = np.zeros((2, 2, 3), np.uint8)
    for t in range(50):  # replayed from disk at once
        progress.frame(t, frame)
    assert "s a frame" not in progress.line()
    for t in range(50, 53):  # dreamed, 2 s each
        clock[0] += 2.0
        progress.frame(t, frame)
    # counting the replayed frames, it was 6 s over 52 frames
    assert progress.line().split(" · ")[1] == "2.00 s a frame", progress.line()


def test_an_upload_is_kept_under_a_name_made_from_its_content_on_python_3_10(tmp_path, monkeypatch):
    """Python 3.10 (which pyproject allows) has no ``hashlib.file_digest``; a file over the 1 MB read size."""
    import hashlib

    monkeypatch.delattr(hashlib, "file_digest", raising=False)
    data = np.random.default_rng(0).bytes(3 << 20)
    (tmp_path / "in.png").write_bytes(data)
    kept = keep_upload(str(tmp_path / "in.png"), tmp_path / "inputs")
    assert Path(kept) == tmp_path / "inputs" / f"{hashlib.sha256(data).hexdigest()[:12]}-in.png"
    assert Path(kept).read_bytes() == data
    assert keep_upload(kept, tmp_path / "inputs") == kept  # already kept: not copied again


def test_a_studio_open_to_the_network_loads_no_job_naming_files_outside_its_work_folder(tmp_path):
    job_file = tmp_path / "job.toml"
    job_file.write_text(f'command = "image"\ninput = "{SAMPLE}"\n')
    with pytest.raises(ZoomdreamError, match="outside the studio's work folder"):
        Studio(tmp_path / "open", private=False).load_job(str(job_file))  # a visitor could read any file
    assert Studio(tmp_path / "local").load_job(str(job_file)).input.startswith(str(tmp_path / "local" / "inputs"))


@pytest.mark.parametrize("change", [dict(zoom="1.02+"), dict(size="64"), dict(frames=-3), dict(layers="block99")])
def test_bad_input_is_the_clis_one_line_error(client, lite0, tmp_path, change):
    status = client.predict(".mp4", *zoom_form(**change), api_name="/render_zoom")[0]
    with pytest.raises(ZoomdreamError) as cli:  # what `zoomdream zoom ...` says for the same settings
        job = job_from_form("zoom", dict(zip(form_fields("zoom"), zoom_form(**change))), tmp_path / "x.mp4", tmp_path)
        runner.prepare(job, model=lite0)
    assert status == error_line(cli.value) and "\n" not in status


def test_a_still_without_an_input_says_so(client):
    form = form_defaults("image")
    status = client.predict(".png", *[form[n] for n in form_fields("image")], api_name="/render_image")[0]
    assert status == "zoomdream: error: no input image given (zoomdream image IN.jpg -o OUT.png)"


def test_motion_preview_moves_the_start_along_the_camera_path(client):
    video, status = client.predict(*zoom_form(frames=240, fps=12, zoom="1.1"), api_name="/motion_zoom")
    frames = list(media.read_video(video))
    assert len(frames) == 48  # 4 s at 12 fps, no dreaming
    centre = [f[24:40, 24:40].astype(float) for f in frames]
    assert np.abs(centre[1] - centre[0]).mean() > 1  # it moves


def test_curves_plot_the_schedules(client):
    plot, status = client.predict(*zoom_form(frames=48, angle="0:(0), 47:(10)"), api_name="/curves_zoom")
    assert status == "schedules plotted" and plot is not None


def test_layer_browser_dreams_each_layer_once(client, studio):
    layers = client.predict("efficientnet-lite0", "", api_name="/list_layers")[0]
    assert "block5" in str(layers)
    cache = studio[0].studio.layer_cache
    before = len(cache)
    gallery, status = client.predict(handle_file(SAMPLE), "efficientnet-lite0", "", ["block3", "block8"], None, None,
                                     api_name="/try_layers")
    assert [item["caption"] for item in gallery] == ["block3", "block8"] and len(cache) == before + 2
    dreams = [media.read_image(item["image"]) for item in gallery]
    assert dreams[0].shape == (128, 192, 3) and not np.array_equal(dreams[0], dreams[1])
    # no image of its own: the zoom form's input
    again, _ = client.predict(None, "efficientnet-lite0", "", ["block8"], None, handle_file(SAMPLE),
                              api_name="/try_layers")
    assert len(cache) == before + 2  # the same image and layer: from the cache, not dreamed again
    np.testing.assert_array_equal(media.read_image(again[0]["image"]), dreams[1])


def test_a_failed_layer_try_shows_only_what_it_dreamed(client):
    client.predict("efficientnet-lite0", "", api_name="/list_layers")
    assert len(client.predict(handle_file(SAMPLE), "efficientnet-lite0", "", ["block3"], None, None,
                              api_name="/try_layers")[0]) == 1
    gallery, status = client.predict(handle_file(SAMPLE), "efficientnet-lite0", "/no/such.weights.h5", ["block3"],
                                     None, None, api_name="/try_layers")
    # the earlier dream left in the gallery, clicking it picked from the failed try's empty list (IndexError)
    assert gallery == [] and status.startswith("zoomdream: error: weights file"), (gallery, status)


def test_a_job_file_loads_into_its_form(client, tmp_path):
    job_file = tmp_path / "job.toml"
    job_file.write_text('command = "zoom"\nnoise = true\nsize = "80x48"\nzoom = "0:(1.01), 60:(1.04)"\n'
                        'frames = 60\noutput = "x.gif"\n')
    values = client.predict(handle_file(str(job_file)), api_name="/load_job")
    assert values[0] == "loaded job.toml: zoom (press Render)"  # the tab selector is not a value
    joined = [str(v) for v in values]
    assert "80x48" in joined and "0:(1.01), 60:(1.04)" in joined and ".gif" in joined
    job_file.write_text('command = "zoom"\nzooom = 1.02\n')
    status = client.predict(handle_file(str(job_file)), api_name="/load_job")[0]
    assert status.startswith("zoomdream: error: unknown setting 'zooom'"), status


def test_a_still_shows_as_an_image_with_its_job_file(client):
    form = form_defaults("image")
    form.update(input=handle_file(SAMPLE), max_size=64, octaves=1, steps=2, precision="float32")
    status, _, video, image, files = client.predict(".jpg", *[form[n] for n in form_fields("image")],
                                                    api_name="/render_image")
    assert status.startswith("done: 1 frame in"), status
    assert shown(video) is None and media.read_image(shown(image)).shape == (43, 64, 3)
    assert load_toml(next(f for f in files if f.endswith(".job.toml")))["input"].endswith("-chelsea.png")


def test_studio_command_listens_on_this_machine_only_by_default():
    from zoomdream.cli import build_parser

    args = build_parser().parse_args(["studio"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, False)


def test_a_video_keeps_its_clips_sound(client):
    form = form_defaults("video")
    form.update(input=handle_file(str(Path(__file__).parent / "data" / "big_buck_bunny_432_433.webm")), duration=0.3,
                max_size=64,
                octaves=1, steps=1, tile=64, precision="float32")
    status, _, video, _, _ = client.predict(".mp4", *[form[n] for n in form_fields("video")],
                                            api_name="/render_video")
    assert status.startswith("done: "), status
    info = media.probe_video(shown(video))
    made = int(status.split()[1])
    assert made == round(0.3 * 24) == len(list(media.read_video(shown(video))))
    assert info.has_audio and (info.width, info.height) == (64, 36)


@pytest.mark.parametrize("frames, message", [
    ("24.5", "zoomdream: error: frames '24.5' is not a whole number (give one, or leave it empty for the default)"),
    ("many", "zoomdream: error: frames 'many' is not a number (give a number, or leave it empty for the default)"),
])
def test_number_fields_name_what_is_wrong(client, frames, message):
    assert client.predict(".mp4", *zoom_form(frames=frames), api_name="/render_zoom")[0] == message


def props(app, elem_id: str) -> dict:
    """A component's settings as the page receives them."""
    return next(c["props"] for c in app.config["components"] if c.get("props", {}).get("elem_id") == elem_id)


def test_help_texts_speak_to_a_person_not_to_the_command_line(studio):
    """Every form field's help is for someone at the page: no flags, no engine numbers, no command names."""
    from zoomdream.studio import TABS

    for command in TABS:
        for name in form_fields(command):
            info = props(studio[0], f"{command}-{name}").get("info") or ""
            assert not any(jargon in info for jargon in ("--", "[-1, 1]", "`", "keras")), (command, name, info)


def test_the_page_at_rest(studio):
    """Stop is neither red nor clickable with nothing to stop; the layer list is filled before any button
    (from the layer table, no model loaded); layer thumbnails show whole pictures, not square crops."""
    app = studio[0]
    stop = props(app, "stop")
    assert stop["interactive"] is False and stop.get("variant") != "stop"
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in props(app, "layers-choice")["choices"]]
    assert "block10" in choices and "head" in choices
    assert props(app, "layers-gallery")["object_fit"] == "contain"


def test_start_up_names_our_share_flag_and_ctrl_c_closes_the_server_at_once(tmp_path, capsys):
    """Gradio's start-up lines tell the user to set `share=True` in `launch()`; ours name --share. Ctrl-C
    (here, SIGINT sent to this process once the start-up line is out) closes the server before serve() raises."""
    import signal
    import threading

    from zoomdream.studio import serve

    port = free_port()
    url = f"http://127.0.0.1:{port}/"

    seen = []  # what serve() printed, read through capsys itself: sys.stdout is not always its buffer here

    def printed() -> str:
        seen.append(capsys.readouterr().out)
        return "".join(seen)

    def interrupt_when_up():
        try:
            wait_for(lambda: "Ctrl-C stops it" in printed(), what="the start-up line")
        finally:
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_up, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        serve(tmp_path, port=port)
    assert not answers(url)
    out = printed()
    assert f"open {url}" in out and "--share" in out and "share=True" not in out, out


def test_ctrl_c_while_gradio_checks_its_new_server_closes_it(tmp_path, monkeypatch):
    """`launch` asks its freshly started server over HTTP whether it answers; a Ctrl-C at that moment escaped
    serve() with the server still answering (the test above sent its SIGINT there in about half its runs)."""
    import gradio.networking

    from zoomdream.studio import serve

    def interrupted(url):
        raise KeyboardInterrupt

    monkeypatch.setattr(gradio.networking, "url_ok", interrupted)
    port = free_port()
    with pytest.raises(KeyboardInterrupt):
        serve(tmp_path, port=port)
    assert not answers(f"http://127.0.0.1:{port}/")
