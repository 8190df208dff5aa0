"""See an animation's shape before rendering it: every schedule and audio feature, one value per frame.

``table(settings)`` evaluates a resolved zoom or video job: ``frame``, ``seconds``, then every schedule of its
settings by name (``zoom``, ``angle``, ``tx``, ``ty``, ``steps``, ``step_size``, ...), the layer blend weights
of a keyframed ``--layers`` (``layers:block8``, ...), and the audio features (``loudness`` ... ``beat``,
``bpm``). ``export_schedules`` writes it as CSV (``--export-schedules``, before a render starts);
``write_curves`` plots it with matplotlib (``zoomdream curves``), frames along the bottom, seconds along the
top. matplotlib is the optional extra ``pip install 'zoomdream[plots]'``; nothing else here needs it.
"""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np

from zoomdream.audio import SERIES, Track
from zoomdream.config import job_inputs
from zoomdream.errors import ZoomdreamError
from zoomdream.loops import loop_module
from zoomdream.media.files import atomic_write_bytes, check_output_target, make_output_folder, same_file, show
from zoomdream.schedules import Schedule, TextSchedule

PLOT_EXTENSIONS = (".png", ".svg", ".pdf")
WIDTH_IN, PANEL_IN, MARGIN_IN, DPI = 12.0, 1.45, 0.9, 100
GROUPS = (("tx", "ty"), ("loudness", "onset", "beat"), ("bass", "mid", "treble"))  # drawn in one panel each


def table(settings) -> dict[str, np.ndarray]:
    """Every schedule of a loop's resolved settings and its track's features, one value per frame."""
    fps = getattr(settings, "fps", None)
    track = getattr(settings, "audio", None)
    frames = getattr(settings, "frames", None)
    if not fps or not is_dataclass(settings):
        raise ZoomdreamError("schedules belong to zoom and video renders (a still image has none)")
    if frames is None:
        if track is None:
            raise ZoomdreamError("cannot tell how many frames this clip has (give --duration)")
        frames = track.features.frames
    columns = {"frame": np.arange(frames), "seconds": np.arange(frames) / fps}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Schedule):
            columns[f.name] = value.series(frames)
        elif isinstance(value, dict) and value and all(isinstance(v, Schedule) for v in value.values()):
            columns.update((name, schedule.series(frames)) for name, schedule in value.items())
        elif isinstance(value, TextSchedule):
            columns.update(layer_weights(value, frames))
    if isinstance(track, Track):
        features = track.features
        columns.update((name, features.column(name, frames)) for name in SERIES)
        columns["bpm"] = features.column("bpm", frames)
    return columns


def layer_weights(layers: TextSchedule, frames: int) -> dict[str, np.ndarray]:
    """Per frame, the weight of each layer term a keyframed layer schedule blends."""
    from zoomdream.loops.zoom import layer_blend

    terms, weights_at = layer_blend(layers)
    weights = np.array([weights_at(t) for t in range(frames)]).reshape(frames, len(terms))
    names = [term.layer + (f"[{','.join(map(str, term.channels))}]" if term.channels else "") for term in terms]
    return {f"layers:{name}": weights[:, i].astype(np.float64) for i, name in enumerate(names)}


def _checked_path(path: str, extensions: tuple[str, ...], flag: str, job) -> Path:
    """An output path with a known extension that is none of the job's inputs."""
    p = Path(path)
    if p.suffix.lower() not in extensions:
        raise ZoomdreamError(f"{flag} '{show(p)}' must end in {' or '.join(extensions)}")
    for source in job_inputs(job):
        if same_file(source, p):
            raise ZoomdreamError(f"{flag} '{show(p)}' would overwrite the input '{show(source)}' (choose another "
                                 f"name)")
    check_output_target(p)
    return p


def export_schedules(settings, path: str, job) -> Path:
    """Write the table as CSV (one row per frame, exact values), atomically; returns the path."""
    p = _checked_path(path, (".csv",), "--export-schedules", job)
    columns = table(settings)
    make_output_folder(p)
    rows = zip(*(values.tolist() for values in columns.values()))
    text = ",".join(columns) + "\n" + "".join(",".join(map(repr, row)) + "\n" for row in rows)
    atomic_write_bytes(p, text.encode())  # a temp name per writer: parallel exports never share one
    return p


def read_csv(path: str | Path) -> dict[str, np.ndarray]:
    """A table written by ``export_schedules``, column by column."""
    with open(path) as f:
        header = f.readline().strip().split(",")
        data = np.loadtxt(f, delimiter=",", ndmin=2)
    return {name: data[:, i] for i, name in enumerate(header)}


def constants(columns: dict[str, np.ndarray]) -> dict[str, float]:
    """Schedules and features that hold one value on every frame: written in the title, not drawn."""
    return {name: float(values[0]) for name, values in columns.items()
            if name not in ("frame", "seconds", "bpm") and len(values) and np.all(values == values[0])}


def panels(columns: dict[str, np.ndarray]) -> list[list[str]]:
    """The columns each panel shows, top to bottom: one schedule a panel, except the pairs and families in
    GROUPS and all layer weights together. Frame, seconds, the bpm and constants are not drawn (unless all
    are constant)."""
    fixed = constants(columns)
    names = [name for name in columns if name not in ("frame", "seconds", "bpm")]
    names = [name for name in names if name not in fixed] or names
    result, placed = [], set()
    for name in names:
        if name in placed:
            continue
        group = next((g for g in GROUPS if name in g), None)
        if name.startswith("layers:"):
            members = [n for n in names if n.startswith("layers:")]
        else:
            members = [n for n in names if n in group] if group else [name]
        result.append(members)
        placed.update(members)
    return result


def plot(columns: dict[str, np.ndarray], fps: float, title: str):
    """A matplotlib Figure of the table: one panel per entry of ``panels``, frames below, seconds above."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ZoomdreamError("zoomdream curves draws with matplotlib (pip install 'zoomdream[plots]')") from None
    groups = panels(columns)
    if not groups:
        raise ZoomdreamError("nothing to plot: this render has no schedules")
    figure = Figure(figsize=(WIDTH_IN, MARGIN_IN + PANEL_IN * len(groups)), dpi=DPI, layout="constrained")
    axes = figure.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    frames = columns["frame"]
    for ax, group in zip(axes, groups):
        for name in group:
            ax.plot(frames, columns[name], label=name.removeprefix("layers:"), gid=name, linewidth=0.9)
        label = "layer weights" if group[0].startswith("layers:") else ", ".join(group)
        if "bpm" in columns and "beat" in group:
            label += f" ({columns['bpm'][0]:.1f} BPM)"
        ax.set_title(label, loc="left", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        if len(group) > 1:
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    axes[-1].set_xlabel("frame", fontsize=9)
    axes[-1].set_xlim(frames[0], max(frames[-1], 1))
    top = axes[0].secondary_xaxis("top", functions=(lambda f: f / fps, lambda s: s * fps))
    top.set_xlabel("seconds", fontsize=9)
    top.tick_params(labelsize=8)
    fixed = constants(columns)
    if fixed and len(fixed) < len(columns) - 2:
        title += "\nconstant: " + ", ".join(f"{name} {value:g}" for name, value in fixed.items())
    figure.suptitle(title, fontsize=10)
    return figure


def checked_outputs(job) -> Path:
    """The plot's path (and ``--export-schedules``'s), checked as a render checks its output (``--check``)."""
    if not job.output:
        raise ZoomdreamError("no output file given (add -o curves.png)")
    if job.export_schedules:
        _checked_path(job.export_schedules, (".csv",), "--export-schedules", job)
    return _checked_path(job.output, PLOT_EXTENSIONS, "curves output", job)


def write_curves(job):
    """``zoomdream curves``: resolve the job as its render would, write ``--export-schedules`` if asked, and
    plot every schedule to ``job.output``. Returns the Figure."""
    out = checked_outputs(job)
    settings = loop_module(job.command).resolve(job)
    if job.export_schedules:
        export_schedules(settings, job.export_schedules, job)
    columns = table(settings)
    frames = len(columns["frame"])
    music = f", music: {Path(job.audio).name}" if job.audio else ""
    figure = plot(columns, settings.fps, f"zoomdream {job.command}: {frames} frames at {settings.fps:g} fps "
                                         f"({frames / settings.fps:.1f} s){music}")
    try:
        make_output_folder(out)
        figure.savefig(out, dpi=DPI)
    except OSError as e:
        raise ZoomdreamError(f"cannot write '{show(out)}': {e.strerror or e} (check the folder and its "
                             f"permissions)") from None
    return figure
