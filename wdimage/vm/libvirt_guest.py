"""The drill's guest interface (wdimage.vm.guest) for a libvirt domain: the one module that uses libvirt-python.

- inside the guest: the QEMU guest agent through libvirt (`libvirt_qemu.qemuAgentCommand`, which resynchronises
  the channel itself before each command), `guest-exec` to run sh scripts;
- the outcome: libvirt's domain event callbacks (watchdog, lifecycle, reboot), dispatched by libvirt's default
  event loop on a daemon thread; libvirt gives them no timestamp, so each gets time.time() on arrival;
- from the host: suspend/resume, the interface's link state (updateDeviceFlags), start when shut off, and the
  watchdog's action of the running domain (QMP watchdog-set-action through qemuMonitorCommand: wdimage's only
  monitor passthrough, which libvirt records as a taint); the audit's read-only view (ReadOnlyHost, -Domain).
The domain is someone else's: closing lets go of the connection, it never stops or undefines the domain.
"""

import base64
import json
import shlex
import threading
import time
import xml.etree.ElementTree as ET

from wdimage.errors import failure, usage_error
from wdimage.models import Action, action_from_libvirt_event
from wdimage.vm.domainxml import DOMAIN_STATES, domain_watchdog, watchdogs  # noqa: F401 (callers use these names)
from wdimage.vm.guest import Capability, Event, EventKind, ExecResult, Guest, Target, Unsupported

try:
    import libvirt
    import libvirt_qemu
except ImportError:  # the [libvirt] extra is optional; say how to get it when it is needed
    libvirt = libvirt_qemu = None

INSTALL_HINT = "pip install 'wdimage[libvirt]' (it builds libvirt-python: needs libvirt-dev and pkg-config)"

# virDomainEventType -> (our kind, the names of its details), for the lifecycle events the drill cares about
_LIFECYCLE = {
    3: (EventKind.STOP, ["paused", "migrated", "io-error", "watchdog", "restored", "from-snapshot",
                         "api-error", "postcopy", "postcopy-failed"]),
    4: (EventKind.RESUME, ["unpaused", "migrated", "from-snapshot", "postcopy", "postcopy-failed"]),
    5: (EventKind.EXITED, ["shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from-snapshot"]),
    6: (EventKind.SHUTDOWN, ["finished", "guest", "host"]),
}
_LIFECYCLE_NAMES = ["defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown",
                    "pmsuspended", "crashed"]
# virDomainState -> QEMU's run-state words (query-status), as Guest.status() promises
_STATES = {0: "unknown", 1: "running", 2: "running", 3: "paused", 4: "shutdown", 5: "exited",
           6: "guest-panicked", 7: "suspended"}
_PAUSED_WATCHDOG = 6  # VIR_DOMAIN_PAUSED_WATCHDOG

_loop_lock = threading.Lock()
_loop_started = False


def require_libvirt() -> None:
    if libvirt is None:
        raise usage_error("--libvirt needs the libvirt Python binding, which is not installed", hint=INSTALL_HINT)


def _start_event_loop() -> None:
    """libvirt's default event loop, registered before the first connection and run on a daemon thread."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()
        # Errors reach us as libvirtError; libvirt's default handler would also print each to stderr.
        libvirt.registerErrorHandler(lambda opaque, error: None, None)

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


def connect(uri: str | None):
    """A read-write connection (None: libvirt's default URI); bad URI or no daemon -> exit 2 naming --connect."""
    require_libvirt()
    _start_event_loop()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise usage_error(f"--connect {uri or '(default)'}: {e.get_error_message()}",
                          hint="is libvirtd running, and is this the URI of its socket?") from None


def define(uri: str | None, xml: str) -> str:
    """Define a persistent domain from `xml` (as `virsh define`); its name."""
    conn = connect(uri)
    try:
        return conn.defineXML(xml).name()
    except libvirt.libvirtError as e:
        raise failure(f"libvirt refused the domain: {e.get_error_message()}") from None
    finally:
        conn.close()


class LibvirtTarget(Target):
    """A libvirt domain, by name, on a connection URI (None: libvirt's default)."""

    def __init__(self, domain: str, uri: str | None = None):
        self.uri = uri
        self.conn = connect(uri)
        try:
            self.domain = self.conn.lookupByName(domain)
        except libvirt.libvirtError as e:
            self.conn.close()
            raise usage_error(f"--libvirt {domain}: {e.get_error_message()}",
                              hint="`virsh list --all` names the domains of this connection") from None
        self.name = domain
        self.started_at: float | None = None  # time.monotonic() when this target started (or reset) the domain
        self._handed_out = False  # boot() gave the runner a guest already
        self.capabilities = frozenset({Capability.PAUSE} | ({Capability.LINK} if self.interface_xml() else set()))

    def describe(self) -> str:
        return f"libvirt domain {self.name} on {self.conn.getURI()}"

    def xml(self) -> str:
        return self.domain.XMLDesc(0)

    def watchdog(self) -> dict | None:
        """The watchdog the domain really has (its first <watchdog>, or q35's iTCO enabled through
        qemu:commandline); None if it has none."""
        return domain_watchdog(self.xml())

    def machine(self) -> str:
        """The domain's machine type as libvirt runs it (e.g. pc-i440fx-7.2); '' if it names none."""
        found = ET.fromstring(self.xml()).find("os/type")
        return (found.get("machine") or "") if found is not None else ""

    def hypervisor(self) -> str:
        """E.g. "QEMU 7.2.0 through libvirt 9.0.0" ('' when the connection cannot say)."""
        def dotted(number: int) -> str:
            return f"{number // 1000000}.{number // 1000 % 1000}.{number % 1000}"
        try:
            return f"{self.conn.getType()} {dotted(self.conn.getVersion())} through libvirt {dotted(self.conn.getLibVersion())}"
        except libvirt.libvirtError:
            return ""

    def interface_xml(self) -> str | None:
        """The domain's first network interface, as libvirt describes it now (for a link-state update)."""
        interface = ET.fromstring(self.xml()).find("devices/interface")
        return ET.tostring(interface, encoding="unicode") if interface is not None else None

    def boot(self) -> "LibvirtGuest":
        """The first time: a handle on the domain as it runs (started first if it is shut off). Later: the runner
        wants a fresh guest because a scenario left this one crashed, paused or off, so the domain is reset
        (a paused one resumed), or started again if it is off; only scenarios given --yes-crash-it get there."""
        if self._handed_out and self.domain.isActive():
            try:
                self.domain.reset(0)
                if self.domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                    self.domain.resume()
            except libvirt.libvirtError as e:
                raise failure(f"libvirt could not reset {self.name}: {e.get_error_message()}") from None
            self.started_at = time.monotonic()
        self._handed_out = True
        return self.attach()

    def attach(self) -> "LibvirtGuest":
        """A handle on the domain as it runs, started first if it is shut off (never reset)."""
        guest = LibvirtGuest(self)  # events registered first: the start itself is seen
        if not self.domain.isActive():
            try:
                self.domain.create()
            except libvirt.libvirtError as e:
                guest.close()
                raise failure(f"libvirt could not start {self.name}: {e.get_error_message()}") from None
            self.started_at = time.monotonic()
        guest.started_at = self.started_at if self.started_at is not None else time.monotonic()
        return guest

    def close(self) -> None:
        try:
            self.conn.close()
        except libvirt.libvirtError:
            pass


class LibvirtGuest(Guest):
    kind = "libvirt"

    def __init__(self, target: LibvirtTarget):
        self.target = target
        self.domain = target.domain
        self.capabilities = target.capabilities
        self.started_at = time.monotonic()
        self._events: list[Event] = []
        self._cond = threading.Condition()
        conn = target.conn
        self._callbacks = [
            conn.domainEventRegisterAny(self.domain, libvirt.VIR_DOMAIN_EVENT_ID_WATCHDOG, self._on_watchdog, None),
            conn.domainEventRegisterAny(self.domain, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None),
            conn.domainEventRegisterAny(self.domain, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, self._on_reboot, None),
        ]

    def describe(self) -> str:
        return self.target.describe()

    # --- events (called on the event loop's thread) -----------------------------------------------------------
    def _add(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def _on_watchdog(self, conn, domain, action, opaque) -> None:
        known = action_from_libvirt_event(action)  # QEMU's word, as QMP says it
        name = str(known) if known else str(action)
        self._add(Event(EventKind.WATCHDOG, time.time(), action=known, raw=f"libvirt watchdog {name}"))

    def _on_reboot(self, conn, domain, opaque) -> None:
        self._add(Event(EventKind.RESET, time.time(), raw="libvirt reboot"))

    def _on_lifecycle(self, conn, domain, event, detail, opaque) -> None:
        name = _LIFECYCLE_NAMES[event] if event < len(_LIFECYCLE_NAMES) else str(event)
        if event not in _LIFECYCLE:
            return
        kind, details = _LIFECYCLE[event]
        why = details[detail] if detail < len(details) else str(detail)
        action = Action.PAUSE if kind is EventKind.STOP and why == "watchdog" else None
        self._add(Event(kind, time.time(), action=action, reason=why, raw=f"libvirt lifecycle {name} {why}"))

    def clear_events(self) -> None:
        with self._cond:
            self._events.clear()

    def events(self) -> list[Event]:
        with self._cond:
            return list(self._events)

    def wait_event(self, kinds: set[EventKind], deadline: float) -> Event | None:
        with self._cond:
            while True:
                for i, event in enumerate(self._events):
                    if event.kind in kinds:
                        return self._events.pop(i)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 1.0))

    def status(self) -> str:
        try:
            state, reason = self.domain.state()
        except libvirt.libvirtError:
            return "exited"
        if state == 3 and reason == _PAUSED_WATCHDOG:
            return "watchdog"
        return _STATES.get(state, str(state))

    # --- the guest agent ------------------------------------------------------------------------------------
    def agent(self, command: str, arguments: dict | None = None, timeout: int = 10):
        """One guest-agent command through libvirt; its `return` value."""
        request: dict = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            answer = libvirt_qemu.qemuAgentCommand(self.domain, json.dumps(request), max(1, int(timeout)), 0)
        except libvirt.libvirtError as e:
            raise AgentError(f"guest agent {command}: {e.get_error_message()}") from None
        return json.loads(answer)["return"]

    def wait_agent(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.agent("guest-ping", timeout=2)
                return
            except AgentError as e:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"the guest agent of {self.target.name} did not answer within "
                                       f"{timeout:.0f}s ({e})") from None
                time.sleep(1)

    def run(self, script: str, *args: str, timeout: float = 30) -> ExecResult:
        argv = ["/bin/sh", "-c", script, "sh", *args]
        pid = self.agent("guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True})["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.agent("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                return ExecResult(exitcode=status.get("exitcode"), stdout=_decode(status.get("out-data", "")),
                                  stderr=_decode(status.get("err-data", "")), signal=status.get("signal"))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{shlex.join(argv)} still running in the guest after {timeout:.0f}s")
            time.sleep(0.1)

    def spawn(self, script: str, *args: str) -> None:
        try:
            self.agent("guest-exec", {"path": "/bin/sh", "arg": ["-c", script, "sh", *args]}, timeout=5)
        except AgentError:
            pass  # a panic may take the agent down before it answers

    # --- from the host ----------------------------------------------------------------------------------------
    set_action_note = ("libvirt has no API for the watchdog's action of a running domain: it went through "
                       "libvirt-qemu's monitor passthrough (qemuMonitorCommand), which libvirt records as a taint "
                       "on the domain (custom-monitor, in its log) until the domain is next started")

    def set_watchdog_action(self, action: Action) -> None:
        """QMP watchdog-set-action through libvirt-qemu's monitor passthrough: the one passthrough wdimage sends
        (libvirt 9.0 can change the <watchdog action=> of a defined domain only, for its next start)."""
        try:
            answer = json.loads(libvirt_qemu.qemuMonitorCommand(self.domain, monitor_command(action), 0))
        except libvirt.libvirtError as e:
            raise ConnectionError(f"libvirt could not set the watchdog action to {action}: "
                                  f"{e.get_error_message()}") from None
        if "error" in answer:
            raise ConnectionError(f"QEMU refused watchdog-set-action {action}: {answer['error'].get('desc')}")

    def set_action_command(self, action: Action) -> str:
        connect = ["-c", self.target.conn.getURI()] if self.target.uri else []
        return shlex.join(["virsh", *connect, "qemu-monitor-command", self.target.name, monitor_command(action)])

    def pause(self) -> None:
        self.domain.suspend()

    def resume(self) -> None:
        self.domain.resume()

    def set_link(self, up: bool) -> None:
        interface = self.target.interface_xml()
        if interface is None:
            raise Unsupported(f"{self.target.name} has no network interface")
        element = ET.fromstring(interface)
        link = element.find("link")
        if link is None:
            link = ET.SubElement(element, "link")
        link.set("state", "up" if up else "down")
        try:
            self.domain.updateDeviceFlags(ET.tostring(element, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as e:
            if e.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_UNSUPPORTED):
                raise Unsupported(f"libvirt: {e.get_error_message()}") from None
            raise failure(f"libvirt could not set the link {'up' if up else 'down'}: {e.get_error_message()}") from None

    def hypervisor(self) -> str:
        return self.target.hypervisor()

    def close(self) -> None:
        for callback in self._callbacks:
            try:
                self.target.conn.domainEventDeregisterAny(callback)
            except libvirt.libvirtError:
                pass
        self._callbacks = []


def monitor_command(action: Action) -> str:
    """QMP's watchdog-set-action, as libvirt-qemu's monitor passthrough and `virsh qemu-monitor-command` take it."""
    return json.dumps({"execute": "watchdog-set-action", "arguments": {"action": str(Action(action))}})


class AgentError(ConnectionError):
    """The guest agent did not answer through libvirt (not connected, not responding, or an error)."""


def _decode(data: str) -> str:
    return base64.b64decode(data).decode(errors="replace") if data else ""


# --- the audit's read-only view -----------------------------------------------------------------------------
# Guest-agent commands that only read. guest-exec is sent only by ReadOnlyDomain.run, for a script the view was
# opened with (scripts that only read, e.g. wdimage.drill.checks.GUEST_PROBE), never for anything else.
READ_ONLY_AGENT = frozenset({"guest-ping", "guest-info", "guest-exec-status", "guest-get-osinfo",
                             "guest-get-host-name", "guest-get-time", "guest-get-timezone"})


class ReadOnlyRefused(AttributeError):
    """The read-only view was asked for something that is not reading (an AttributeError: the view has no
    such method)."""


class HostUnreachable(ConnectionError):
    """libvirt could not open the connection (no daemon, ssh refused, no such host): the cause is the message."""


class NoSuchDomain(LookupError):
    pass


class AgentUnavailable(ConnectionError):
    """The guest agent did not answer. `connected` is False when libvirt says it is not connected at all (no
    agent running in the guest, or no channel) rather than connected and silent (hung, busy)."""

    def __init__(self, message: str, connected: bool):
        super().__init__(message)
        self.connected = connected


class ReadOnlyHost:
    """A libvirt connection seen through a window that only reads: the domains' names, XML and state, the
    hypervisor's versions, and through ReadOnlyDomain the guest agent's read-only commands. Nothing here starts,
    stops, pauses, resets, defines, migrates a domain or speaks to the QEMU monitor (libvirt records monitor
    passthrough as a taint). The connection is read-write only because libvirt refuses guest-agent commands on a
    read-only one."""

    def __init__(self, uri: str | None, scripts: frozenset[str] = frozenset()):
        require_libvirt()
        _start_event_loop()
        try:
            self._conn = libvirt.open(uri)
        except libvirt.libvirtError as e:
            raise HostUnreachable(e.get_error_message()) from None
        self._scripts = frozenset(scripts)
        self.uri = self._conn.getURI()

    def facts(self) -> dict:
        """The hypervisor's and libvirt's versions as (major, minor, micro), and the host's name."""
        def triple(number: int) -> tuple[int, int, int]:
            return number // 1000000, number // 1000 % 1000, number % 1000
        try:
            return {"hypervisor": self._conn.getType(), "hypervisor_version": triple(self._conn.getVersion()),
                    "libvirt_version": triple(self._conn.getLibVersion()), "hostname": self._conn.getHostname()}
        except libvirt.libvirtError as e:
            raise HostUnreachable(e.get_error_message()) from None

    def domain_names(self) -> list[str]:
        try:
            return sorted(d.name() for d in self._conn.listAllDomains(0))
        except libvirt.libvirtError as e:
            raise HostUnreachable(e.get_error_message()) from None

    def domain(self, name: str) -> "ReadOnlyDomain":
        try:
            return ReadOnlyDomain(self._conn.lookupByName(name), self._scripts)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                raise NoSuchDomain(f"no domain {name!r} on {self.uri}") from None
            raise HostUnreachable(e.get_error_message()) from None

    def close(self) -> None:
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ReadOnlyRefused(f"the audit's view of {self.__dict__.get('uri')} only reads: no {name}()")


class ReadOnlyDomain:
    """One domain, read: XML, state, guest-agent commands of READ_ONLY_AGENT, and guest-exec of the view's
    scripts alone. Anything else raises ReadOnlyRefused."""

    def __init__(self, domain, scripts: frozenset[str]):
        self._domain = domain
        self._scripts = scripts
        self.name = domain.name()

    def xml(self) -> str:
        """The domain's XML as libvirt describes it now (the live definition for a running domain)."""
        return self._domain.XMLDesc(0)

    def state(self) -> str:
        """virsh domstate's word (running, paused, shutoff, ...)."""
        return DOMAIN_STATES.get(self._domain.state()[0], "nostate")

    def agent(self, command: str, arguments: dict | None = None, timeout: float = 5):
        """One read-only guest-agent command; its `return` value."""
        if command not in READ_ONLY_AGENT:
            raise ReadOnlyRefused(f"guest-agent command {command!r} is not one that only reads "
                                  f"({', '.join(sorted(READ_ONLY_AGENT))})")
        return self._agent(command, arguments, timeout)

    def _agent(self, command: str, arguments: dict | None, timeout: float):
        request: dict = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        try:
            answer = libvirt_qemu.qemuAgentCommand(self._domain, json.dumps(request), max(1, int(timeout)), 0)
        except libvirt.libvirtError as e:
            message = e.get_error_message()
            connected = not ("not connected" in message or "not configured" in message
                             or e.get_error_code() in (libvirt.VIR_ERR_OPERATION_INVALID,
                                                       libvirt.VIR_ERR_NO_SUPPORT))
            raise AgentUnavailable(f"guest agent {command}: {message}", connected) from None
        return json.loads(answer)["return"]

    def run(self, script: str, *args: str, timeout: float = 30) -> ExecResult:
        """guest-exec of one of the view's read-only scripts (values as positional parameters), to completion."""
        if script not in self._scripts:
            raise ReadOnlyRefused("guest-exec of a script that is not one of the audit's read-only probes")
        deadline = time.monotonic() + timeout
        pid = self._agent("guest-exec", {"path": "/bin/sh", "arg": ["-c", script, "sh", *args],
                                         "capture-output": True}, timeout)["pid"]
        while True:
            status = self.agent("guest-exec-status", {"pid": pid}, timeout=max(1.0, deadline - time.monotonic()))
            if status.get("exited"):
                return ExecResult(exitcode=status.get("exitcode"), stdout=_decode(status.get("out-data", "")),
                                  stderr=_decode(status.get("err-data", "")), signal=status.get("signal"))
            if time.monotonic() > deadline:
                raise AgentUnavailable(f"the probe was still running in the guest after {timeout:.0f}s", True)
            time.sleep(0.05)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ReadOnlyRefused(f"the audit's view of domain {self.__dict__.get('name')} only reads: no {name}()")
