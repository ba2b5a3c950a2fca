"""The one module that runs QEMU: guests on scratch overlays, the KVM probe boot, and the two socket protocols
spoken to a running guest (QMP to QEMU itself, the QEMU guest agent to a daemon inside the guest).

Both protocols are JSON objects over a unix stream socket, one per line. QMP answers commands by `id` and
interleaves asynchronous events (`WATCHDOG`, `RESET`, ...) that carry QEMU's own wall-clock timestamp. The guest
agent has no ids: it answers in order, so after a timeout the stream is resynchronised with
`guest-sync-delimited`, whose answer is preceded by a 0xFF byte that cannot occur in JSON text.
"""

import base64
import ctypes
import dataclasses
import itertools
import json
import os
import random
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wdimage import log
from wdimage.errors import ExitCode, WdimageError
from wdimage.run import run
from wdimage.vm.launch import LaunchSpec, qemu_argv

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


class QmpClient:
    """QEMU Machine Protocol: commands answered by id, events kept in arrival order until taken."""

    def __init__(self, stream: JsonStream):
        self._stream = stream
        self._ids = itertools.count(1)
        self.events: list[dict] = []
        self.greeting: dict = {}

    def negotiate(self, timeout: float = 10) -> None:
        self.greeting = self._stream.receive(time.monotonic() + timeout)
        if "QMP" not in self.greeting:
            raise ProtocolError(f"not a QMP greeting: {self.greeting}")
        self.execute("qmp_capabilities", timeout=timeout)

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 10) -> Any:
        request_id = f"wdimage-{next(self._ids)}"
        request: dict = {"execute": command, "id": request_id}
        if arguments:
            request["arguments"] = arguments
        self._stream.send(request)
        deadline = time.monotonic() + timeout
        while True:
            message = self._stream.receive(deadline)
            if "event" in message:
                self.events.append(message)
            elif message.get("id") == request_id:
                if "error" in message:
                    error = message["error"]
                    raise ProtocolError(f"QMP {command}: {error.get('class')}: {error.get('desc')}")
                return message.get("return")

    def wait_event(self, names: set[str], deadline: float) -> dict | None:
        """Take the first event named in `names`, reading until the deadline; None if none came.

        Other events stay in `events`. A closed connection (QEMU exited) ends the wait like the deadline.
        """
        while True:
            for i, event in enumerate(self.events):
                if event["event"] in names:
                    return self.events.pop(i)
            if not self.pump(deadline):
                return None

    def pump(self, deadline: float) -> bool:
        """Read one message, keeping it in `events` if it is one; False at the deadline or when QEMU closed the
        connection (it exited)."""
        try:
            message = self._stream.receive(deadline)
        except (TimeoutError, ConnectionError):
            return False
        if "event" in message:
            self.events.append(message)
        return True

    def close(self) -> None:
        self._stream.close()


def event_time(event: dict) -> float:
    """QEMU's wall-clock time of an event, as time.time() counts it."""
    stamp = event.get("timestamp", {})
    return stamp.get("seconds", 0) + stamp.get("microseconds", 0) / 1e6


@dataclasses.dataclass(frozen=True)
class ExecResult:
    exitcode: int | None  # None when killed by a signal
    stdout: str
    stderr: str
    signal: int | None = None


class GuestAgent:
    """The QEMU guest agent (qemu-ga) inside the guest, reached through its virtio-serial channel."""

    def __init__(self, stream: JsonStream, synced: bool = False):
        self._stream = stream
        self._synced = synced  # False: the next command first resynchronises

    def sync(self, timeout: float, attempt_timeout: float = 1.0) -> None:
        """Resynchronise until the agent echoes our token: while the guest boots, nobody reads the channel.

        Every attempt uses a new token; answers to earlier attempts (read late) are skipped.
        """
        deadline = time.monotonic() + timeout
        while True:
            # Back off: nobody drains the channel while the guest boots, and a unix socket takes only about
            # 200 unread writes before sendall() blocks (a boot of minutes on a loaded host).
            attempt_timeout = min(attempt_timeout * 1.5, 10.0)
            token = random.randrange(1, 2**31)
            attempt_deadline = min(deadline, time.monotonic() + attempt_timeout)
            try:
                self._stream.send({"execute": "guest-sync-delimited", "arguments": {"id": token}}, prefix=SENTINEL,
                                  timeout=max(attempt_deadline - time.monotonic(), 0.01))
                while True:
                    self._stream.skip_past_sentinel(attempt_deadline)
                    if self._stream.receive(attempt_deadline).get("return") == token:
                        self._synced = True
                        return
            except (TimeoutError, ProtocolError):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"the guest agent did not answer within {timeout:.0f}s") from None

    def execute(self, command: str, arguments: dict | None = None, timeout: float = 10) -> Any:
        if not self._synced:
            self.sync(timeout)
        request: dict = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self._stream.send(request)
        try:
            message = self._stream.receive(time.monotonic() + timeout)
        except TimeoutError:
            self._synced = False  # a late answer would be taken for the next command's
            raise
        if "error" in message:
            error = message["error"]
            raise ProtocolError(f"guest agent {command}: {error.get('class')}: {error.get('desc')}")
        if "return" not in message:
            self._synced = False
            raise ProtocolError(f"guest agent {command}: unexpected answer {message}")
        return message["return"]

    def spawn(self, argv: list[str], capture: bool = True) -> int:
        """Start a program in the guest; its guest pid, for exec_status()."""
        arguments = {"path": argv[0], "arg": argv[1:], "capture-output": capture}
        return self.execute("guest-exec", arguments)["pid"]

    def exec_status(self, pid: int) -> ExecResult | None:
        status = self.execute("guest-exec-status", {"pid": pid})
        if not status.get("exited"):
            return None
        return ExecResult(
            exitcode=status.get("exitcode"),
            stdout=_decode(status.get("out-data", "")),
            stderr=_decode(status.get("err-data", "")),
            signal=status.get("signal"),
        )

    def exec(self, argv: list[str], timeout: float = 30) -> ExecResult:
        """Run a program in the guest to completion and return its exit code and output."""
        pid = self.spawn(argv)
        deadline = time.monotonic() + timeout
        while (result := self.exec_status(pid)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{shlex.join(argv)} still running in the guest after {timeout:.0f}s")
            time.sleep(0.05)
        return result

    def shell(self, script: str, *args: str, timeout: float = 30) -> ExecResult:
        """Run a POSIX sh script in the guest; values go in as positional parameters, never into the text."""
        return self.exec(["/bin/sh", "-c", script, "sh", *args], timeout=timeout)

    def close(self) -> None:
        self._stream.close()


def _decode(data: str) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""


def create_overlay(base: Path, overlay: Path) -> None:
    """A scratch qcow2 whose writes never reach `base`."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", "qcow2", str(overlay)],
        capture=True)


def private_dir() -> Path:
    """A 0700 dir for one drill's sockets, overlays and console logs.

    Under TMPDIR unless its path could not be a QEMU option value (a comma) or a unix socket path (too long).
    """
    parent = tempfile.gettempdir()
    if "," in parent or len(parent) > 60:
        parent = "/tmp"
    path = Path(tempfile.mkdtemp(prefix="wdimage-drill-", dir=parent))
    path.chmod(0o700)
    return path


class Guest:
    """One QEMU process: started on a spec whose QMP (and guest agent) sockets live in a private dir."""

    def __init__(self, spec: LaunchSpec, log_path: Path):
        if spec.qmp_socket is None:
            raise ValueError("a guest needs a QMP socket")
        self.spec = spec
        self.log_path = log_path  # QEMU's own stdout/stderr
        self.process: subprocess.Popen | None = None
        self.qmp: QmpClient | None = None
        self.started_at = 0.0  # time.monotonic() when QEMU was started

    def start(self, transcript: list | None = None) -> None:
        argv = qemu_argv(self.spec)
        log.info(f"$ {shlex.join(argv)}")  # logged as run() does; not run(): QEMU outlives this call
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                            preexec_fn=_die_with_parent)
        self.started_at = time.monotonic()
        try:
            sock = connect_unix(self.spec.qmp_socket, timeout=30, alive=self.alive)
            self.qmp = QmpClient(JsonStream(sock, transcript))
            self.qmp.negotiate()
        except (OSError, TimeoutError, ProtocolError):  # QEMU refused the options or aborted at once
            self.stop()
            raise ProtocolError(f"QEMU did not start: {self.qemu_output()}") from None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def agent(self, timeout: float, transcript: list | None = None) -> GuestAgent:
        """A guest agent connection, once the agent answers (it starts late in the guest's boot)."""
        if self.spec.qga_socket is None:
            raise ValueError("this guest has no guest agent channel")
        agent = GuestAgent(JsonStream(connect_unix(self.spec.qga_socket, timeout=10), transcript))
        try:
            agent.sync(timeout)
        except BaseException:
            agent.close()
            raise
        return agent

    def status(self) -> str:
        """QEMU's run state ("running", "paused", "watchdog", "shutdown", ...) or "exited"."""
        if not self.alive() or self.qmp is None:
            return "exited"
        try:
            return self.qmp.execute("query-status")["status"]
        except (OSError, TimeoutError, ProtocolError):
            return "exited"

    def qemu_output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace").strip()[-2000:] or "(no output)"
        except OSError:
            return "(no output)"

    def stop(self) -> None:
        if self.qmp is not None:
            try:
                if self.alive():
                    self.qmp.execute("quit", timeout=5)
            except (OSError, TimeoutError, ProtocolError):
                pass
            self.qmp.close()
            self.qmp = None
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    """In the QEMU child before exec: a drill killed outright (CI timeout) must not leave guests running."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG (Linux)
    except Exception:  # not Linux, or no prctl in libc: the drill's own cleanup still stops QEMU
        pass


# --- the KVM probe -----------------------------------------------------------------------------------------

KVM_PROBE_MARK = "Freeing unused kernel"  # the kernel is done with its own init and is about to run /init
_accel_cache: dict[str, tuple[str, str]] = {}


def choose_accel(spec: LaunchSpec, workdir: Path, probe_seconds: float = 20) -> tuple[str, str]:
    """("kvm"|"tcg", why): KVM only when a probe boot of this very kernel gets through its init under it.

    WDIMAGE_ACCEL=kvm|tcg skips the probe. The answer is kept for the rest of the process.
    """
    forced = os.environ.get("WDIMAGE_ACCEL", "")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise WdimageError(f"WDIMAGE_ACCEL={forced!r}: expected kvm or tcg")
        return forced, f"WDIMAGE_ACCEL={forced}"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    key = str(spec.kernel)
    if key not in _accel_cache:
        _accel_cache[key] = _probe_kvm(spec, workdir, probe_seconds)
    return _accel_cache[key]


def _probe_kvm(spec: LaunchSpec, workdir: Path, probe_seconds: float) -> tuple[str, str]:
    booted, why = probe_boot(spec, workdir, probe_seconds, accel="kvm")
    return ("kvm" if booted else "tcg"), f"KVM probe: {why}"


def probe_boot(spec: LaunchSpec, workdir: Path, seconds: float, accel: str) -> tuple[bool, str]:
    """Boot `spec` under `accel` (writes thrown away) until the kernel is done with its own init, at most
    `seconds`: (booted, what was seen). The real tests run it under TCG to prove it recognises a boot."""
    console = workdir / f"{accel}-probe-console.log"
    # The probe looks for a kernel message on the console: where the kernel is booted directly, make sure
    # the message is printed whatever the image's command line says about the log level.
    cmdline = f"{spec.cmdline or ''} loglevel=7".strip() if spec.kernel else spec.cmdline
    probe = dataclasses.replace(spec, accel=accel, serial=f"file:{console}", snapshot=True, cmdline=cmdline,
                                qmp_socket=workdir / f"{accel}-probe-qmp.sock", qga_socket=None)
    guest = Guest(probe, workdir / f"{accel}-probe-qemu.log")
    with log.step(f"Probing {accel.upper()} (a boot of up to {seconds:.0f}s)"):
        try:
            guest.start()
        except ProtocolError:
            return False, f"QEMU failed under {accel.upper()}: {_last_line(guest.qemu_output())}"
        with guest:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                if KVM_PROBE_MARK in _read(console):
                    took = time.monotonic() - guest.started_at
                    return True, f"the kernel booted under {accel.upper()} in {took:.1f}s"
                if not guest.alive():
                    return False, f"QEMU failed under {accel.upper()}: {_last_line(guest.qemu_output())}"
                time.sleep(0.2)
            seen = "no console output" if not _read(console) else "the kernel stopped early"
            return False, f"no progress under {accel.upper()} within {seconds:.0f}s ({seen})"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else "(no output)"
