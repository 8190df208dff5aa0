"""One tab per command (image, zoom, video): its form of Job settings as Gradio controls, the main ones open
and three to a row, and its buttons wired: Render, and for a zoom or video the motion preview and the schedules
plot."""
from __future__ import annotations

from typing import Any, Callable

from zoomdream.config import FIELDS, Job
from zoomdream.errors import error_line
from zoomdream.studio.forms import FILES, FORMATS, HELP, MAIN, form_defaults, form_value, job_from_form
from zoomdream.studio.session import PREVIEW_SECONDS
from zoomdream.studio.view import DREAM, View


def command_form(gr, command: str) -> dict[str, Any]:
    """One command's tab: output format and Render on top, its fields, then its previews."""
    defaults = form_defaults(command)
    made: dict[str, Any] = {"fields": {}}
    with gr.Row(equal_height=True):  # at the top, beside the progress and the latest frame
        made["format"] = gr.Dropdown(list(FORMATS[command]), value=FORMATS[command][0], label="output format",
                                     elem_id=f"{command}-format")
        made["render"] = gr.Button("Render", variant="primary", elem_id=f"render-{command}")
    main = [n for n in defaults if n in MAIN]
    lay_out(gr, made["fields"], command, main, defaults)
    with gr.Accordion("More settings", open=False):
        lay_out(gr, made["fields"], command, [n for n in defaults if n not in main], defaults)
    if command == "zoom":
        with gr.Accordion("Motion preview: the camera path on the start image, no dreaming", open=False):
            made["motion"] = gr.Button("Preview motion", elem_id="motion-preview")
            made["motion_video"] = gr.Video(label=f"the first {PREVIEW_SECONDS:g} s (or fewer) of the motion",
                                            interactive=False, elem_id="motion-video")
    if command in ("zoom", "video"):
        with gr.Accordion("Schedules: every keyframed value and music feature per frame", open=False):
            made["curves"] = gr.Button("Plot the schedules", elem_id=f"curves-{command}")
            made["plot"] = gr.Plot(label="schedules")
    return made


def lay_out(gr, made: dict[str, Any], command: str, names: list[str], defaults: dict[str, Any]) -> None:
    """Fields three to a row, in order; an upload takes a row of its own."""
    row: list[str] = []
    for name in [*names, None]:
        if name is not None and name not in FILES:
            row.append(name)
            if len(row) < 3:
                continue
        if row:
            with gr.Row(equal_height=True):
                for n in row:
                    made[n] = component(gr, n, command, defaults[n])
            row = []
        if name is not None and name in FILES:
            made[name] = component(gr, name, command, defaults[name])


def component(gr, name: str, command: str, value: Any):
    """The input for one Job setting, by its kind: files upload, choices drop down, numbers are numbers."""
    from zoomdream.models import BACKBONES

    meta = FIELDS[name].metadata
    label, info, key = name.replace("_", " "), HELP.get(name, meta["help"]), f"{command}-{name}"
    if name == "input":
        if command == "video":
            return gr.Video(label="input video", sources=["upload"], include_audio=True, elem_id=key)
        return gr.Image(label="input image" + (" (or tick noise)" if command == "zoom" else ""), type="filepath",
                        sources=["upload", "clipboard"], elem_id=key)
    if name == "guide":
        return gr.Image(label=label, type="filepath", sources=["upload"], elem_id=key)
    if name == "audio":
        return gr.Audio(label="music", type="filepath", sources=["upload"], elem_id=key)
    if name == "model":
        return gr.Dropdown(list(BACKBONES), value=value, label=label, info=info, elem_id=key)
    if meta["choices"]:
        return gr.Dropdown(list(meta["choices"]), value=value, label=label, info=info, elem_id=key)
    kind = meta["kind"]
    if kind == "bool":
        return gr.Checkbox(value=value, label=label, info=info, elem_id=key)
    if kind in ("int", "float") and value is not None:  # one without a default number is text, empty at first
        return gr.Number(value=value, label=label, info=info, precision=0 if kind == "int" else None,
                         elem_id=key)
    return gr.Textbox(value=form_value(name, value), label=label, info=info, max_lines=1,
                      elem_id=key)


def wire_form(view: View, command: str, made: dict[str, Any]) -> None:
    """Render, and the form's previews, each answering from the form's values as they are."""
    studio, names = view.studio, list(made["fields"])

    def render(extension, *values):
        try:
            job = studio.job(command, dict(zip(names, values)), extension)
        except Exception as e:
            yield from view.failed(e)
            return
        yield from view.shown(studio.render(job))

    view.armed(made["render"].click, render, [made["format"], *made["fields"].values()], view.outputs,
               api_name=f"render_{command}", **DREAM)

    def job_of(values) -> Job:
        return job_from_form(command, dict(zip(names, values)), None, studio.uploads)

    extras = [("motion", "motion_video", lambda job: str(studio.motion_preview(job)), "motion preview: no dreaming"),
              ("curves", "plot", studio.curves, "schedules plotted")]
    for button, shown_in, action, done in extras:
        if button in made:
            made[button].click(_answer(view, action, done, job_of), list(made["fields"].values()),
                               [made[shown_in], view.status], api_name=f"{button}_{command}", concurrency_limit=None)


def _answer(view: View, action: Callable, done: str, job_of: Callable) -> Callable:
    """A form's values made a Job and given to ``action``: its result and ``done``, or none and the error."""
    def run(*values):
        try:
            return action(job_of(values)), done
        except Exception as e:
            return None, view.noticed(error_line(e))
    return run
