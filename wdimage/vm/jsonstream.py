"""Newline-delimited JSON over a unix stream socket: what QMP and the QEMU guest agent both speak.

Both protocols are JSON objects, one per line. QMP answers commands by `id` and interleaves asynchronous events
(wdimage.vm.qmp); the guest agent has no ids: it answers in order, so after a timeout the stream is
resynchronised with `guest-sync-delimited`, whose answer is preceded by a 0xFF byte that cannot occur in JSON
text (wdimage.vm.qga).
"""

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

from wdimage.errors import ExitCode, WdimageError

SENTINEL = b"\xff"  # precedes guest-sync-delimited answers; never part of UTF-8 JSON


class ProtocolError(WdimageError):
    """QEMU or the guest agent answered with an error or with something that is not the protocol."""

    def __init__(self, message: str):
        super().__init__(message, code=ExitCode.FAILED)


class JsonStream:
    """Newline-delimited JSON over a connected stream socket, with deadlines and an optional transcript.

    The transcript, when given, records every chunk as ("send"|"recv", bytes): the unit tests replay such
    recordings, made against a real QEMU, through a socketpair.
    """

    def __init__(self, sock: socket.socket, transcript: list[tuple[str, bytes]] | None = None):
        self._sock = sock
        self._buffer = b""
        self.transcript = transcript

    def send(self, message: dict, prefix: bytes = b"", timeout: float = 10) -> None:
        """Send one message; TimeoutError when the peer has not taken it within `timeout` seconds (a guest agent
        channel that nobody reads while the guest boots fills up)."""
        data = prefix + json.dumps(message).encode() + b"\n"
        if self.transcript is not None:
            self.transcript.append(("send", data))
        self._sock.settimeout(timeout)  # not the short remainder a previous receive left behind
        try:
            self._sock.sendall(data)
        except socket.timeout:
            raise TimeoutError(f"the peer took nothing for {timeout:.0f}s") from None

    def receive(self, deadline: float) -> dict:
        """The next JSON object; TimeoutError at the deadline, ConnectionError when the peer closed."""
        while True:
            line, newline, rest = self._buffer.partition(b"\n")
            if newline:
                self._buffer = rest
                text = line.strip()
                if not text:
                    continue
                try:
                    message = json.loads(text)
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise ProtocolError(f"not a JSON message: {text[:200]!r} ({e})") from None
                if not isinstance(message, dict):
                    raise ProtocolError(f"not a JSON object: {text[:200]!r}")
                return message
            self._fill(deadline)

    def skip_past_sentinel(self, deadline: float) -> None:
        """Drop everything up to and including the next 0xFF byte (stale answers, half-written lines)."""
        while SENTINEL not in self._buffer:
            self._buffer = b""
            self._fill(deadline)
        self._buffer = self._buffer.split(SENTINEL, 1)[1]

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no answer in time")
        self._sock.settimeout(remaining)
        try:
            chunk = self._sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no answer in time") from None
        if not chunk:
            raise ConnectionError("the peer closed the connection")
        if self.transcript is not None:
            self.transcript.append(("recv", chunk))
        self._buffer += chunk

    def close(self) -> None:
        self._sock.close()


def connect_unix(path: Path, timeout: float, alive: Callable[[], bool] = lambda: True) -> socket.socket:
    """Connect to a unix socket that a just-started QEMU is about to create."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            return sock
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            if not alive() or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
