"""The drill's QEMU backend: guests that wdimage starts itself from a built image (wdimage.vm.guest's interface).

Each boot runs on a fresh qcow2 overlay in the drill's private directory, so the built image is never written.
QMP events become wdimage.vm.guest.Events with QEMU's own timestamps; live migration starts a second QEMU on this
machine with `-incoming` on a private unix socket and carries on with it.
"""

import dataclasses
import json
import shlex
import time
from pathlib import Path

from wdimage import log
from wdimage.models import Action, action_from_qemu
from wdimage.vm.guest import Capability, Event, EventKind, ExecResult, Guest, Target
from wdimage.vm.jsonstream import ProtocolError
from wdimage.vm.launch import LaunchSpec
from wdimage.vm.process import QemuProcess, create_overlay
from wdimage.vm.qga import GuestAgent
from wdimage.vm.qmp import event_time

QMP_KINDS = {"WATCHDOG": EventKind.WATCHDOG, "RESET": EventKind.RESET, "SHUTDOWN": EventKind.SHUTDOWN,
             "STOP": EventKind.STOP, "RESUME": EventKind.RESUME}
MIGRATION_TIMEOUT = 120  # seconds for a 1 GiB guest over a unix socket on this machine (measured: 1.3 s)
CAPABILITIES = frozenset({Capability.PAUSE, Capability.LINK, Capability.MIGRATE, Capability.FRESH_BOOT})


def to_event(message: dict) -> Event:
    data = message.get("data", {})
    return Event(QMP_KINDS[message["event"]], event_time(message), action=action_from_qemu(data.get("action")),
                 reason=data.get("reason"), raw=message["event"])


class QemuGuest(Guest):
    kind = "qemu"
    capabilities = CAPABILITIES

    def __init__(self, spec: LaunchSpec, workdir: Path, tag: str):
        self.spec = spec
        self.workdir = workdir
        self.tag = tag
        self.process = QemuProcess(spec, workdir / f"{tag}-qemu.log")
        self.agent: GuestAgent | None = None
        self._events: list[Event] = []
        self._migrations = 0

    def start(self) -> None:
        self.process.start()
        self.started_at = self.process.started_at

    def describe(self) -> str:
        return f"QEMU {self.spec.model} on {self.spec.image.name} ({self.spec.accel})"

    # --- guest agent ----------------------------------------------------------------------------------------
    def wait_agent(self, timeout: float) -> None:
        if self.agent is not None:
            self.agent.close()  # the channel takes one client; a reset guest needs a fresh sync anyway
            self.agent = None
        self.agent = self.process.agent(timeout)

    def run(self, script: str, *args: str, timeout: float = 30) -> ExecResult:
        if self.agent is None:
            raise ConnectionError("no guest agent connection")
        return self.agent.shell(script, *args, timeout=timeout)

    def spawn(self, script: str, *args: str) -> None:
        if self.agent is None:
            raise ConnectionError("no guest agent connection")
        try:
            self.agent.spawn(["/bin/sh", "-c", script, "sh", *args], capture=False)
        except (TimeoutError, ConnectionError):
            pass  # a panic may take the agent down before it answers

    # --- events ---------------------------------------------------------------------------------------------
    def _take_qmp_events(self) -> None:
        """Move the QMP events we know into our own list, as Events; leave the rest."""
        qmp = self.process.qmp
        if qmp is None:
            return
        self._events += [to_event(m) for m in qmp.events if m["event"] in QMP_KINDS]
        qmp.events[:] = [m for m in qmp.events if m["event"] not in QMP_KINDS]

    def clear_events(self) -> None:
        if self.process.qmp is not None and self.process.alive():
            try:
                self.process.qmp.execute("query-status")  # reads what is pending first
            except (OSError, TimeoutError, ProtocolError):
                pass
        self._take_qmp_events()
        self._events.clear()

    def wait_event(self, kinds: set[EventKind], deadline: float) -> Event | None:
        while True:
            self._take_qmp_events()
            for i, event in enumerate(self._events):
                if event.kind in kinds:
                    return self._events.pop(i)
            if not self.process.alive():
                if self._drain():  # what QEMU wrote just before it went (poweroff: the WATCHDOG event, then exit)
                    continue
                return Event(EventKind.EXITED, time.time(), raw="QEMU exited") if EventKind.EXITED in kinds else None
            if time.monotonic() >= deadline:
                return None
            if self.process.qmp is None or not self.process.qmp.pump(min(deadline, time.monotonic() + 1.0)):
                time.sleep(0.05)  # nothing came in this slice, or QEMU is exiting: look again

    def _drain(self) -> bool:
        """After QEMU exited: read the messages still in the QMP socket; whether there were any. Without this,
        an event written in the moment between our last read and QEMU's exit would be lost."""
        qmp, read = self.process.qmp, False
        while qmp is not None and qmp.pump(time.monotonic() + 0.2):
            read = True
        return read

    def events(self) -> list[Event]:
        self._take_qmp_events()
        return list(self._events)

    def status(self) -> str:
        return self.process.status()

    # --- host actions ---------------------------------------------------------------------------------------
    def _qmp(self, command: str, arguments: dict | None = None, timeout: float = 10):
        if self.process.qmp is None:
            raise ConnectionError("QEMU is not running")
        return self.process.qmp.execute(command, arguments, timeout=timeout)

    def pause(self) -> None:
        self._qmp("stop")

    def resume(self) -> None:
        self._qmp("cont")

    def set_link(self, up: bool) -> None:
        self._qmp("set_link", {"name": "net0", "up": up})

    def set_watchdog_action(self, action: Action) -> None:
        try:
            self._qmp("watchdog-set-action", {"action": str(action)})
        except (OSError, TimeoutError, ProtocolError) as e:
            raise ConnectionError(f"QMP watchdog-set-action {action}: {e or type(e).__name__}") from None

    def set_action_command(self, action: Action) -> str:
        """By hand, on QMP's socket (it takes one client at a time: only once wdimage let go of it)."""
        request = json.dumps({"execute": "watchdog-set-action", "arguments": {"action": str(action)}})
        return (f"printf '%s\\n' '{{\"execute\":\"qmp_capabilities\"}}' {shlex.quote(request)} | "
                f"socat - UNIX-CONNECT:{shlex.quote(str(self.spec.qmp_socket))}")

    def migrate(self) -> dict:
        """Start a destination QEMU with -incoming on a private socket, migrate, and carry on with it."""
        self._migrations += 1
        tag = f"{self.tag}-mig{self._migrations}"
        channel = self.workdir / f"{tag}-incoming.sock"
        spec = dataclasses.replace(
            self.spec, qmp_socket=self.workdir / f"{tag}-qmp.sock", qga_socket=self.workdir / f"{tag}-qga.sock",
            serial=f"file:{self.workdir / f'{tag}-console.log'}", incoming=f"unix:{channel}")
        destination = QemuProcess(spec, self.workdir / f"{tag}-qemu.log")
        destination.start()
        began = time.monotonic()
        try:
            self._qmp("migrate", {"uri": f"unix:{channel}"})
            deadline = began + MIGRATION_TIMEOUT
            while (info := self._qmp("query-migrate")).get("status") not in ("completed", "failed", "cancelled"):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"migration not finished after {MIGRATION_TIMEOUT}s: {info}")
                time.sleep(0.1)
            if info["status"] != "completed":
                raise ProtocolError(f"migration {info['status']}: {info.get('error-desc', '')}")
        except BaseException:
            destination.stop()
            raise
        seconds = time.monotonic() - began
        self._take_qmp_events()
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        self.process.stop()  # the source: its guest now runs on the destination
        self.process, self.spec, self.tag = destination, spec, tag
        log.info(f"migrated in {seconds:.1f}s (downtime {info.get('downtime', '?')} ms)")
        return {"seconds": round(seconds, 2), "downtime_ms": info.get("downtime"),
                "total_time_ms": info.get("total-time")}

    def hypervisor(self) -> str:
        """From QMP's greeting: "QEMU 7.2.0 (Debian 1:7.2+dfsg-7+deb12u16)"."""
        qmp = self.process.qmp
        version = (qmp.greeting.get("QMP") or {}).get("version") or {} if qmp is not None else {}
        numbers = version.get("qemu") or {}
        if not numbers:
            return ""
        package = str(version.get("package") or "").strip()
        return (f"QEMU {numbers.get('major')}.{numbers.get('minor')}.{numbers.get('micro')}"
                + (f" ({package})" if package else ""))

    def console_tail(self, lines: int = 40) -> str:
        serial = self.spec.serial
        if not serial.startswith("file:"):
            return ""
        try:
            text = Path(serial[5:]).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        self.process.stop()


class QemuTarget(Target):
    """Guests booted from a built image: each boot on a fresh overlay in `workdir` (a private 0700 dir)."""

    capabilities = CAPABILITIES

    def __init__(self, base: LaunchSpec, workdir: Path, title: str):
        self.base = base  # image = the built image; sockets and console are set per boot
        self.workdir = workdir
        self.title = title
        self.boots = 0
        self.early: QemuGuest | None = None  # a first boot started ahead of time (start_early)

    def describe(self) -> str:
        return f"{self.title} under QEMU ({self.base.accel})"

    def start_early(self) -> None:
        """Start the first boot now (while something else runs beside it, e.g. the KVM probe): the next
        boot() returns this guest, its clock counting from QEMU's start as any boot's does."""
        self.early = self._launch()

    def drop_early(self) -> None:
        """Stop a boot started ahead of time that is no longer wanted (the probe chose KVM, or an interrupt)."""
        if self.early is not None:
            self.early.close()
            self.early = None

    def boot(self) -> QemuGuest:
        if self.early is not None:
            guest, self.early = self.early, None
            return guest
        return self._launch()

    def _launch(self) -> QemuGuest:
        self.boots += 1
        tag = f"boot{self.boots}"
        overlay = self.workdir / f"{tag}.qcow2"
        create_overlay(self.base.image, overlay)
        spec = dataclasses.replace(
            self.base, image=overlay, qmp_socket=self.workdir / f"{tag}-qmp.sock",
            qga_socket=self.workdir / f"{tag}-qga.sock", serial=f"file:{self.workdir / f'{tag}-console.log'}")
        guest = QemuGuest(spec, self.workdir, tag)
        guest.start()
        return guest
