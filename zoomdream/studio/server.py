"""Serving the studio: the address checked before anything is made, the Gradio server started on it, and
closed at once on Ctrl-C while a running render ends at its next frame, kept for Resume."""
from __future__ import annotations

import errno
import os
import socket
import threading
from pathlib import Path

from zoomdream.errors import ZoomdreamError
from zoomdream.studio.page import PAGE_JS, build_app
from zoomdream.studio.session import Studio


def serve(workdir: str | Path, *, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
          models: dict | None = None, block: bool = True):
    """Start the studio on ``host:port`` (this machine only unless asked). ``block=False`` returns the running
    Gradio app (tests); ``models`` are already-loaded models to use, keyed (model, weights, precision)."""
    check_address(host, port)  # before the work folder is made
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise ZoomdreamError("the studio needs Gradio (pip install 'zoomdream[studio]')") from None
    studio = Studio(workdir, models, private=host in ("127.0.0.1", "localhost", "::1") and not share)
    app = build_app(studio).queue(default_concurrency_limit=1)
    app.studio = studio
    try:
        try:
            # Quiet: Gradio's start-up lines tell the user to set `share=True` in `launch()`; ours name our flag.
            app.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True, quiet=True,
                       allowed_paths=[str(studio.workdir)], theme=_theme(gr), footer_links=["api"], js=PAGE_JS)
        except OSError as e:
            if "port" not in str(e):
                raise
            raise ZoomdreamError(_port_in_use(host, port)) from None  # another program took it since our check
        public = f"; public link {app.share_url}" if app.share_url else " (--share adds a public link)"
        print(f"zoomdream studio: open {app.local_url} in a browser{public}; renders go to {studio.workdir}; "
              f"Ctrl-C stops it", flush=True)
        if block:
            threading.Event().wait()  # until Ctrl-C (or SIGTERM, which the CLI turns into it)
    except BaseException:  # Ctrl-C too, and re-raised
        # Also a Ctrl-C during start-up: `launch` checks its server over HTTP after starting it, and an interrupt
        # there would leave the server answering after serve() raised.
        _close(app, studio)
        raise
    return app


def check_address(host: str, port: int) -> None:
    """Refuse a port or host the studio cannot listen on, in one line naming the flag, before anything is made
    (Gradio answers an out-of-range port with a traceback, and a taken one with advice about its own settings)."""
    if not 1 <= port <= 65535:
        raise ZoomdreamError(f"--port {port} is not a port number (give one from 1 to 65535, e.g. --port 7860)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise ZoomdreamError(f"--host '{host}' is not an address of this machine (give 127.0.0.1, or 0.0.0.0 for "
                             f"every network)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds it
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ZoomdreamError(_port_in_use(host, port)) from None
            if e.errno == errno.EACCES:
                raise ZoomdreamError(f"--port {port} needs administrator rights (choose one above 1023, e.g. "
                                     f"--port 7860)") from None
            raise ZoomdreamError(f"--host '{host}' is not an address of this machine ({e.strerror}; give "
                                 f"127.0.0.1, or 0.0.0.0 for every network)") from None


def _port_in_use(host: str, port: int) -> str:
    other = port + 1 if port < 65535 else 7860
    return (f"--port {port} is in use on {host} (another studio or program listens there: stop it, or choose "
            f"another port, e.g. --port {other})")


def _close(app, studio: Studio) -> None:
    """Close the server at once (its port refuses before this returns) and let a running render end at its
    next frame, kept for Resume (a second Ctrl-C leaves that frame)."""
    studio.stop()
    app.close(verbose=False)
    if studio.busy.locked():
        print("zoomdream studio: stopping the render after its frame in progress (kept for Resume)", flush=True)
        with studio.busy:
            pass


def _theme(gr):
    """Gradio's default look in the system's fonts: the page loads nothing from the internet."""
    sans, mono = ["ui-sans-serif", "system-ui", "sans-serif"], ["ui-monospace", "monospace"]
    return gr.themes.Default(font=sans, font_mono=mono)

