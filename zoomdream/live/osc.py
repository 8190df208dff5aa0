"""Live control over OSC, the protocol of VJ tools (TouchDesigner, Resolume, MadMapper, TouchOSC): each live
setting has an address, ``/zoomdream/step_size 0.03``, ``/zoomdream/layers "block10:1"``, and
``/zoomdream/preset "look.job.toml"`` loads a saved look. Messages are handled one at a time, in the order they
arrive; a bad one (unknown address, wrong value, not OSC at all) is said in one line and ignored.
"""
from __future__ import annotations

import threading
from typing import Callable

from zoomdream.errors import ZoomdreamError, one_line
from zoomdream.live.controls import NAMES, Controls
from zoomdream.settings import number

PREFIX = "/zoomdream/"
ADDRESSES = (*(PREFIX + name for name in NAMES), PREFIX + "preset")


def parse_listen(text: str) -> tuple[str, int]:
    """``--osc 9000`` (every interface, as VJ tools listen) or ``--osc 127.0.0.1:9000`` (this machine only)."""
    host, _, port = str(text).rpartition(":")
    try:
        value = int(port)
    except ValueError:
        raise ZoomdreamError(f"--osc '{text}' is not a port (give a UDP port such as 9000, or HOST:PORT)") from None
    return host or "0.0.0.0", int(number(value, "osc", low=0, high=65535, integer=True))  # 0: any free port (said)


class OscControl:
    """Listens on a UDP port on a thread of its own and passes each message to ``controls``. A port that cannot
    be opened fails at once, in one line naming --osc."""

    def __init__(self, listen: str, controls: Controls, say: Callable[[str], None]):
        try:
            from pythonosc import osc_packet
            from pythonosc.dispatcher import Dispatcher
            from pythonosc.osc_server import BlockingOSCUDPServer
        except ImportError:
            raise ZoomdreamError("--osc needs python-osc (pip install 'zoomdream[live]')") from None
        self.controls, self.say = controls, say
        host, port = parse_listen(listen)

        class Checked(Dispatcher):
            def call_handlers_for_packet(self, data: bytes, client_address):
                try:
                    osc_packet.OscPacket(data)
                except osc_packet.ParseError:
                    say(f"zoomdream: osc: a malformed packet (not OSC) from {client_address[0]} (ignored)")
                    return []
                return super().call_handlers_for_packet(data, client_address)

        class Server(BlockingOSCUDPServer):
            def verify_request(self, request, client_address) -> bool:
                return True  # what is not OSC is said and ignored by Checked, not dropped unseen

        dispatcher = Checked(strict_timing=False)  # a bundle timed for later never parks a thread
        dispatcher.set_default_handler(self.message)
        try:
            self.server = Server((host, port), dispatcher)
        except OSError as error:
            raise ZoomdreamError(f"cannot listen for OSC on {host}:{port}: {error.strerror or error} (choose "
                                 f"another --osc port)") from None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs=dict(poll_interval=0.1),
                                       name="zoomdream-osc", daemon=True)
        self.thread.start()

    def message(self, address: str, *values) -> None:
        try:
            if not address.startswith(PREFIX) or address not in ADDRESSES:
                raise ZoomdreamError(f"unknown address {address[:80]} (valid: {PREFIX}NAME for NAME in "
                                     f"{', '.join(NAMES)}, or {PREFIX}preset)")
            if len(values) != 1:
                raise ZoomdreamError(f"{address} takes one value, got {len(values)}")
            name, value = address[len(PREFIX):], values[0]
            if name == "preset":
                if not isinstance(value, str):
                    raise ZoomdreamError(f"{address} takes the path of a job file, got {value!r}")
                loaded = self.controls.load_preset(value)
                self.say(f"osc: preset {value} ({', '.join(loaded)})")
            else:
                self.controls.set(name, value)
                self.say(f"osc: {name} = {value:g}" if isinstance(value, float) else f"osc: {name} = {str(value)[:80]}")
        except ZoomdreamError as error:
            self.say(f"zoomdream: osc: {one_line(str(error))} (ignored)")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
