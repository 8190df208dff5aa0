"""The `zoomdream` command: flags are generated from ``config.Job``, so the CLI, TOML jobs and the saved
record of a render can never disagree about a setting's name or default."""
from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
from dataclasses import fields, replace
from functools import partial

from zoomdream.cluster.flags import add_flags, requested
from zoomdream.config import COMMANDS, FIELDS, LOOPS, RENAMED, Job, load_job_file, make_job
from zoomdream.arguments import Parser
from zoomdream.errors import ZoomdreamError, error_line

RENDER_EXAMPLES = """examples:
  zoomdream render job.toml                    # every option from the file
  zoomdream render job.toml --frames 60        # flags override the file
  zoomdream render jobs/*.toml --cluster       # many jobs at once on a local Ray cluster"""

CURVES_EXAMPLES = """examples:
  zoomdream curves zoom --noise --audio song.mp3 --zoom '1.01+0.04*onset' -o curves.png
  zoomdream curves job.toml -o curves.png --export-schedules schedules.csv
  zoomdream curves video clip.mp4 --step-size '0.01+0.02*smooth(bass, 0.3)' -o curves.png"""

STUDIO_EXAMPLES = """examples:
  zoomdream studio                      # then open http://127.0.0.1:7860
  zoomdream studio --port 8000 --workdir ~/dreams"""

GROUP_TITLES = {"job": "input and output", "model": "model", "dream": "dream (objective and ascent)",
                "loop": "frames", "motion": "motion (keyframed: '0:(1.02), 120:(1.05)' or expressions of t)",
                "output": "output", "audio": "music (--audio: its features drive the schedules)"}


def _add_job_flags(parser: argparse.ArgumentParser, command: str | None) -> None:
    """Add every Job field that applies to ``command`` (all of them for `render`) as a --flag."""
    groups = {}
    for f in fields(Job):
        meta = f.metadata
        if f.name in ("command", "input") or (command and command not in meta["commands"]):
            continue
        group = groups.get(meta["group"]) or groups.setdefault(
            meta["group"], parser.add_argument_group(GROUP_TITLES[meta["group"]]))
        flag = "--" + f.name.replace("_", "-")
        names = [flag, "-o"] if f.name == "output" else [flag]
        default_text = "" if f.default is None else f" (default: {f.default})"
        if f.name in RENAMED.values():  # the old flag still works
            names += ["--" + old.replace("_", "-") for old, new in RENAMED.items() if new == f.name]
        if meta["kind"] == "bool":
            group.add_argument(*names, dest=f.name, action="store_true", default=argparse.SUPPRESS,
                               help=meta["help"])
            continue
        conv = {"int": int, "float": float}.get(meta["kind"], str)
        several = dict(action="append") if f.name == "output" and command == "live" else {}  # -o A -o B
        group.add_argument(*names, dest=f.name, type=conv, **several, default=argparse.SUPPRESS,
                           choices=meta["choices"],
                           metavar=meta["metavar"] or (None if meta["choices"] else f.name.upper()),
                           help=meta["help"] + default_text)
    parser.add_argument("--check", action="store_true",
                        help="check the settings, inputs and output, then stop before the model loads")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        allow_abbrev=False,  # `video --frames 3` must not mean --frames-dir
        prog="zoomdream",
        description="DeepDream stills, infinite zooms and stylized video, offline, on a CPU or a GPU.",
        epilog="Run `zoomdream COMMAND --help` for each command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(parser_class=partial(Parser, allow_abbrev=False), dest="command", metavar="COMMAND",
                                required=True)
    parser.commands = sub.choices
    for command in COMMANDS.values():
        p = sub.add_parser(command.name, help=command.help, description=command.help.capitalize() + ".",
                           epilog=command.examples, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("input", nargs=None if command.input_required else "?", default=argparse.SUPPRESS,
                       help=command.input_help)
        _add_job_flags(p, command.name)
        if command.name in ("video", "zoom"):
            add_flags(p, chunks=command.name == "video")
    p = sub.add_parser("render", help="run a TOML job file (flags override it)", epilog=RENDER_EXAMPLES,
                       description="Run a job whose TOML file holds any option (`command = \"zoom\"`, ...).",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job_file", nargs="+", help="TOML job file(s), rendered in turn (or at once with --cluster)")
    p.add_argument("--input", dest="input", default=argparse.SUPPRESS, help="input image or video")
    _add_job_flags(p, None)
    add_flags(p, chunks=False)
    p = sub.add_parser("curves", help="plot every schedule and audio feature of a zoom or video before rendering",
                       description="Plot every schedule (motion, dream strength, layer weights) and audio "
                                   "feature of a render against frame and seconds, from the same command line "
                                   "or job file, without rendering.",
                       epilog=CURVES_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("render", nargs=argparse.REMAINDER, metavar="COMMAND_LINE",
                   help="a zoom or video command line, or a job file, with -o PLOT.png (.svg, .pdf)")
    p = sub.add_parser("models", help="list backbones, their layers and whether their weights are here",
                       description="List backbones, their dreamable layers (with output shapes for a 512-px "
                                   "input) and whether their weights are available offline.")
    p.add_argument("name", nargs="?", help="show only this backbone")
    p.add_argument("--brief", action="store_true", help="skip the layer lists")
    p = sub.add_parser("studio", help="a local web page to render, watch each frame as it is made, stop and resume",
                       description="Open zoomdream in a web browser: image, zoom and video forms, the latest frame "
                                   "while it dreams, Stop and Resume, a motion preview, schedule curves and a "
                                   "layer browser. Needs `pip install 'zoomdream[studio]'`.",
                       epilog=STUDIO_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                        "only; 0.0.0.0 opens it to the network)")
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public link (needs the internet)")
    p.add_argument("--workdir", default="zoomdream-studio", help="folder for renders, uploads and job files "
                                                                  "(default: ./zoomdream-studio)")
    for p in sub.choices.values():  # each command's errors may name the others' options
        p.commands = sub.choices
    return parser


def job_from_args(args: argparse.Namespace, job_file: str | None = None) -> Job:
    values = {k: v for k, v in vars(args).items() if k in FIELDS and k != "command"}
    if args.command == "render":
        data = load_job_file(job_file or args.job_file[0])
        data.update(values)
        return make_job(data)
    return make_job({**values, "command": args.command})


def list_models(name: str | None, shapes: bool) -> None:
    """The backbones, and their layers from ``layers.LAYERS`` (measured once on the networks, so listing them
    starts no TensorFlow)."""
    from zoomdream.layers import LAYERS
    from zoomdream.models import BACKBONES, DEFAULT_MODEL, get_backbone, missing_weights_hint

    names = [get_backbone(name).name] if name else list(BACKBONES)
    for n in names:
        b = BACKBONES[n]
        weights = b.find_weights()
        status = f"weights: {weights}" if weights else f"weights: missing: {missing_weights_hint(b)}"
        default = " [default]" if n == DEFAULT_MODEL else ""
        print(f"{n}{default}: {b.description}\n  input {b.pixel_range}; default layers {b.default_layers}\n"
              f"  {status}")
        if shapes:
            print("  layers (output shape for a 512x512 input):")
            for layer, shape in LAYERS[n].items():
                print(f"    {layer:24s} {shape}")


def _quiet_tensorflow_start() -> None:
    """TensorFlow's C++ start-up notes ("Could not find cuda drivers ...") ignore its log level: import it
    and touch its devices with stderr pointed at /dev/null, so users see only zoomdream's own output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules or os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf

        tf.config.list_physical_devices()
    except ImportError:
        pass  # the real import later reports it
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def plot_curves(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """`zoomdream curves COMMAND LINE`: the render that line (or a job file) describes, plotted, not run."""
    if argv and argv[0].lower().endswith(".toml"):
        argv = ["render", *argv]
    if not argv or argv[0] not in ("zoom", "video", "render"):
        raise ZoomdreamError("give a zoom or video command line or a job file (zoomdream curves zoom --noise "
                             "--audio song.mp3 -o curves.png)")
    args = parser.parse_args(argv)
    from zoomdream.curves import checked_outputs, write_curves

    job = job_from_args(args)
    if args.check:
        from zoomdream import runner

        checked_outputs(job)
        runner.check_job(replace(job, output=None, export_schedules=None))
        print(f"checked {job.output}", file=sys.stderr)
        return 0
    write_curves(job)
    print(f"wrote {job.output}" + (f" and {job.export_schedules}" if job.export_schedules else ""), file=sys.stderr)
    return 0


def reader_gone(error: BaseException) -> bool:
    """Whether ``error`` is stdout's reader closing the pipe (``zoomdream models | head -1``): a normal end for
    a listing, not a failure. A pipe to ffmpeg breaking is another matter, so stdout itself is asked (a pipe
    whose reader is gone polls as an error); when it is gone, it is pointed at /dev/null so the interpreter's
    last flush stays quiet too."""
    if not isinstance(error, BrokenPipeError):
        return False
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), 0)  # errors and hang-ups are reported whatever the mask
        gone = bool(poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows), or no real stdout
        return False
    if gone:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return gone


def check_jobs(jobs: list[Job], protected: tuple[str, ...]) -> None:
    """Every error of the jobs' settings, files and outputs, in a second, before TensorFlow or Ray starts: the
    checks a render makes before its model loads (``cluster.check``), for every job before the first renders."""
    outputs = [os.path.realpath(job.output) for job in jobs if job.output]
    if len(set(outputs)) < len(outputs):  # e.g. one -o given to several job files
        raise ZoomdreamError("two of the job files write the same output (give each its own output, not one -o)")
    for job in jobs:
        if not job.output:  # before cluster.check: the answer needs no numpy, no image reader
            raise ZoomdreamError("no output file given (add -o OUT)")
        from zoomdream.cluster import driver  # after the answers that need no runner

        driver.check(job, protected)


def _terminate(signum, frame):
    """SIGTERM stops a render the way Ctrl-C does: kept frames stay and the resume hint is printed."""
    raise KeyboardInterrupt


def _render(args: argparse.Namespace) -> int:
    """The commands that render jobs (the loops and `render`): checked, then each rendered, on Ray workers
    where a cluster is asked for."""
    files = args.job_file if args.command == "render" else [None]
    jobs = [job_from_args(args, f) for f in files]
    if any(job.command == "live" for job in jobs):  # a clock, several outputs: not a render
        raise ZoomdreamError("a live job runs with `zoomdream live SOURCE -o OUT`, not `render`")
    protected = tuple(files) if args.command == "render" else ()
    check_jobs(jobs, protected)
    if not args.check:  # a check loads no model: starting TensorFlow would cost it seconds
        _quiet_tensorflow_start()
    if requested(args) and not args.check:  # every job at once on Ray workers
        from zoomdream.cluster import driver

        driver.main(args, jobs, [f or args.command for f in files], protected)
        print("\n".join(f"wrote {job.output}" for job in jobs), file=sys.stderr)
        return 0
    from zoomdream import runner

    for job in jobs:
        if args.check:
            runner.check_job(job, protected)
            print(f"checked {job.output}", file=sys.stderr)
            continue
        runner.render(job, protected=protected)
        print(f"wrote {job.output}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.command == "models":
            list_models(args.name, not args.brief)
            sys.stdout.flush()  # a closed pipe shows here, inside the try, not at the interpreter's exit
            return 0
        if args.command == "curves":
            return plot_curves(parser, args.render)
        if args.command == "studio":
            from zoomdream.studio import check_address, serve

            check_address(args.host, args.port)  # in a moment, before TensorFlow starts
            _quiet_tensorflow_start()
            serve(args.workdir, host=args.host, port=args.port, share=args.share)
            return 0
        if args.command == "live":  # against the clock: its own runner, several outputs
            from zoomdream import live

            outputs = vars(args).pop("output", None) or []
            return live.main(job_from_args(args), outputs, check_only=args.check)
        return _render(args)
    except (ZoomdreamError, OSError, MemoryError) as e:
        if reader_gone(e):
            return 0
        print(error_line(e), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        loop = args.command in (*LOOPS, "render")
        hint = " (add --resume to the same command to continue)" if loop else ""
        print(f"zoomdream: interrupted{hint}", file=sys.stderr)
        if args.command == "studio":  # server closed, no render left: skip seconds of unloading TensorFlow
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(130)
        return 130


if __name__ == "__main__":
    sys.exit(main())
