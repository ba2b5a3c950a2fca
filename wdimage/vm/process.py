"""The QEMU process: started on a LaunchSpec whose QMP (and guest agent) sockets live in a private dir, stopped
through QMP; scratch overlays; the probe boot that wdimage.vm.accel runs to choose the accelerator."""

import dataclasses
import signal
import tempfile
import time
from pathlib import Path

from wdimage import log
from wdimage.run import Child, run, start
from wdimage.vm.jsonstream import JsonStream, ProtocolError, connect_unix
from wdimage.vm.launch import LaunchSpec, qemu_argv
from wdimage.vm.qga import GuestAgent
from wdimage.vm.qmp import QmpClient


def create_overlay(base: Path, overlay: Path) -> None:
    """A scratch qcow2 whose writes never reach `base`."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base.resolve()), "-F", "qcow2", str(overlay)],
        capture=True)


def private_dir(parent: Path | None = None) -> Path:
    """A 0700 dir for one drill's sockets, overlays and console logs.

    Under `parent` (default: TMPDIR) unless its path could not be a QEMU option value (a comma) or a unix
    socket path (too long).
    """
    where = str(parent or tempfile.gettempdir())
    if "," in where or len(where) > 60:
        where = "/tmp"
    path = Path(tempfile.mkdtemp(prefix="wdimage-drill-", dir=where))
    path.chmod(0o700)
    return path


class QemuProcess:
    """One QEMU process: started on a spec whose QMP (and guest agent) sockets live in a private dir.
    (wdimage.vm.qemu_guest.QemuGuest puts wdimage.vm.guest's interface on it.)"""

    def __init__(self, spec: LaunchSpec, log_path: Path):
        if spec.qmp_socket is None:
            raise ValueError("a guest needs a QMP socket")
        self.spec = spec
        self.log_path = log_path  # QEMU's own stdout/stderr
        self.process: Child | None = None
        self.qmp: QmpClient | None = None
        self.started_at = 0.0  # time.monotonic() when QEMU was started

    def start(self, transcript: list | None = None) -> None:
        with open(self.log_path, "ab") as out:  # a drill killed outright must not leave guests running
            self.process = start(qemu_argv(self.spec), output=out, die_with_parent=True)
        self.started_at = time.monotonic()
        try:
            sock = connect_unix(self.spec.qmp_socket, timeout=30, alive=self.alive)
            self.qmp = QmpClient(JsonStream(sock, transcript))
            self.qmp.negotiate()
        except (OSError, TimeoutError, ProtocolError):  # QEMU refused the options or aborted at once
            self.stop()
            raise ProtocolError(f"QEMU did not start: {self.qemu_output()}") from None
        except BaseException:  # interrupted while connecting
            self.stop()
            raise

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
        """Quit QEMU through QMP (SIGTERM where there is no QMP connection), SIGKILL it after 10 s."""
        asked = False
        if self.qmp is not None:
            try:
                if self.alive():
                    self.qmp.execute("quit", timeout=5)
                    asked = True
            except (OSError, TimeoutError, ProtocolError):
                pass
            self.qmp.close()
            self.qmp = None
        if self.process is not None:
            self.process.stop(grace=10, signum=None if asked else signal.SIGTERM)

    def __enter__(self) -> "QemuProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- the KVM probe -----------------------------------------------------------------------------------------

KVM_PROBE_MARK = "Freeing unused kernel"  # the kernel is done with its own init and is about to run /init


def probe_boot(spec: LaunchSpec, workdir: Path, seconds: float, accel: str,
               quiet_seconds: float | None = None) -> tuple[bool, str]:
    """Boot `spec` under `accel` (writes thrown away) until the kernel is done with its own init, at most
    `seconds`, or until the console has not changed for `quiet_seconds`: (booted, what was seen). The real tests
    run it under TCG to prove it recognises a boot; wdimage.vm.accel runs it under KVM."""
    console = workdir / f"{accel}-probe-console.log"
    # The probe looks for a kernel message on the console: where the kernel is booted directly, make sure
    # the message is printed whatever the image's command line says about the log level.
    cmdline = f"{spec.cmdline or ''} loglevel=7".strip() if spec.kernel else spec.cmdline
    probe = dataclasses.replace(spec, accel=accel, serial=f"file:{console}", snapshot=True, cmdline=cmdline,
                                qmp_socket=workdir / f"{accel}-probe-qmp.sock", qga_socket=None)
    guest = QemuProcess(probe, workdir / f"{accel}-probe-qemu.log")
    with log.step(f"Probing {accel.upper()} (a boot of up to {seconds:.0f}s)"):
        try:
            guest.start()
        except ProtocolError:
            return False, f"QEMU failed under {accel.upper()}: {_last_line(guest.qemu_output())}"
        with guest, log.waiting(f"the kernel to boot under {accel.upper()}", at_most=seconds):
            deadline = time.monotonic() + seconds
            seen, changed = "", time.monotonic()
            while time.monotonic() < deadline:
                text = _read(console)
                if KVM_PROBE_MARK in text:
                    took = time.monotonic() - guest.started_at
                    return True, f"the kernel booted under {accel.upper()} in {took:.1f}s"
                if not guest.alive():
                    return False, f"QEMU failed under {accel.upper()}: {_last_line(guest.qemu_output())}"
                if text != seen:
                    seen, changed = text, time.monotonic()
                elif quiet_seconds is not None and time.monotonic() - changed >= quiet_seconds:
                    took = time.monotonic() - guest.started_at
                    return False, (f"no progress under {accel.upper()}: the console stopped changing for "
                                   f"{quiet_seconds:.0f}s, {took:.0f}s after QEMU started ({_console_state(seen)})")
                time.sleep(0.2)
            return False, f"no progress under {accel.upper()} within {seconds:.0f}s ({_console_state(_read(console))})"


def _console_state(text: str) -> str:
    if not text:
        return "no console output"
    return "the kernel stopped early" if "Linux version" in text else "the firmware's output, nothing from the kernel"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else "(no output)"
