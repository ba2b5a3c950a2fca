"""One small interface to a running guest, whatever started it.

The drill's scenarios (wdimage.drill.scenarios) are written against `Guest` and `Target` only. Two implementations:
- wdimage.vm.qemu_guest: QEMU processes that wdimage starts itself from a built image (QMP and the guest agent on
  private unix sockets, a fresh overlay per boot);
- wdimage.vm.libvirt_guest: a libvirt domain that someone else defined (libvirt-python: qemuAgentCommand for the
  guest agent, the watchdog and lifecycle event callbacks for the outcome).

Events are the hypervisor's, normalised to a few kinds with a wall-clock time (the hypervisor's own timestamp
where it has one), so that a scenario can say "a WATCHDOG event with action reset came 14.2 s after the fault"
the same way on both.
"""

import abc
import dataclasses
import enum

from wdimage.models import Action

__all__ = ["Capability", "Event", "EventKind", "ExecResult", "Guest", "Target", "Unsupported"]


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """A program run in the guest to completion."""

    exitcode: int | None  # None when killed by a signal
    stdout: str
    stderr: str
    signal: int | None = None


class EventKind(enum.StrEnum):
    WATCHDOG = "watchdog"  # the watchdog device fired; Event.action says what the hypervisor did about it
    RESET = "reset"  # the guest was reset: a soft reboot from inside (reason guest-reset) or the watchdog's reset
    SHUTDOWN = "shutdown"  # the guest shut down or was powered off (Event.reason says who asked)
    STOP = "stop"  # the guest was paused (by the host, or by the watchdog's pause action)
    RESUME = "resume"  # the guest runs again
    EXITED = "exited"  # the hypervisor's process is gone / the domain is shut off


@dataclasses.dataclass(frozen=True)
class Event:
    kind: EventKind
    time: float  # wall clock, as time.time() counts it
    action: Action | None = None  # WATCHDOG (and STOP for the watchdog's pause): what the hypervisor did
    reason: str | None = None  # RESET/SHUTDOWN: e.g. guest-reset, guest-shutdown, watchdog, host-qmp-quit
    raw: str = ""  # the backend's own name for it (QMP event name, libvirt event id and detail)

    def __str__(self) -> str:
        extra = self.action or self.reason
        return f"{self.raw or self.kind}{' ' + extra if extra else ''}"


class Capability(enum.StrEnum):
    PAUSE = "pause"  # pause() / resume()
    LINK = "link"  # set_link(): cut and restore the guest's network link from the host
    MIGRATE = "migrate"  # migrate(): live-migrate the running guest to a new destination on this machine
    FRESH_BOOT = "fresh-boot"  # Target.boot() gives a guest booted from scratch (throwaway writes)


class Unsupported(Exception):
    """This backend cannot do what a scenario needs; the scenario is reported as skipped with this reason."""


class Guest(abc.ABC):
    """A running guest: run commands in it, watch the hypervisor's events, act on it from the host."""

    kind: str = ""  # "qemu" or "libvirt"
    capabilities: frozenset[Capability] = frozenset()
    started_at: float = 0.0  # time.monotonic() when this guest was (re)started from the host

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the report: what this guest is and how it is reached."""

    # --- inside the guest: the QEMU guest agent -----------------------------------------------------------
    @abc.abstractmethod
    def wait_agent(self, timeout: float) -> None:
        """(Re)connect to the guest agent once it answers: after a boot or a reset. TimeoutError if it does not."""

    @abc.abstractmethod
    def run(self, script: str, *args: str, timeout: float = 30) -> ExecResult:
        """Run a POSIX sh script in the guest to completion; values go in as positional parameters, never into
        the script's text."""

    @abc.abstractmethod
    def spawn(self, script: str, *args: str) -> None:
        """Start a sh script in the guest without waiting for it: a panic may take the agent down before it
        answers, so a timeout or closed channel here is not an error."""

    # --- the hypervisor's events --------------------------------------------------------------------------
    @abc.abstractmethod
    def clear_events(self) -> None:
        """Forget the events seen so far (after reading what is pending): only what comes next counts."""

    @abc.abstractmethod
    def wait_event(self, kinds: set[EventKind], deadline: float) -> Event | None:
        """Take the first event of one of `kinds` (those already seen first), reading until `deadline`
        (time.monotonic()); None if none came. Other events stay in events()."""

    @abc.abstractmethod
    def events(self) -> list[Event]:
        """Events seen and not taken, in arrival order."""

    @abc.abstractmethod
    def status(self) -> str:
        """The hypervisor's run state in QEMU's words: running, paused, watchdog, shutdown, ..., or exited."""

    # --- from the host ------------------------------------------------------------------------------------
    def pause(self) -> None:
        raise Unsupported(f"{self.kind}: cannot pause the guest")

    def resume(self) -> None:
        raise Unsupported(f"{self.kind}: cannot resume the guest")

    def set_link(self, up: bool) -> None:
        raise Unsupported(f"{self.kind}: cannot cut the guest's network link")

    def migrate(self) -> dict:
        """Live-migrate to a fresh destination; from then on this object speaks to the destination.
        Returns figures for the report (seconds, downtime_ms, ...)."""
        raise Unsupported(f"{self.kind}: cannot live-migrate the guest here")

    # The watchdog's action, changed live (the drill's `proof`: none for a moment, then the original again).
    set_action_note: str = ""  # what changing it leaves behind on this backend, for the report

    def set_watchdog_action(self, action: Action) -> None:
        """What the hypervisor does when the watchdog fires, from now on (QMP watchdog-set-action). Raises
        ConnectionError (or a subclass) when the hypervisor could not be told."""
        raise Unsupported(f"{self.kind}: cannot change the watchdog's action of a running guest")

    def set_action_command(self, action: Action) -> str:
        """The exact command a person runs to set the action by hand ('' where there is none): printed when
        wdimage could not restore the original action itself."""
        return ""

    def console_tail(self, lines: int = 40) -> str:
        """The end of the guest's serial console, where the backend can read it ('' otherwise)."""
        return ""

    def hypervisor(self) -> str:
        """The hypervisor and its version, in words, where the backend knows them ('' otherwise)."""
        return ""

    @abc.abstractmethod
    def close(self) -> None:
        """Let go of the guest. For guests that wdimage started, stop them; never for someone else's."""


class Target(abc.ABC):
    """Where the drill's guests come from: a built image (a new QEMU per boot) or a libvirt domain."""

    capabilities: frozenset[Capability] = frozenset()

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the report."""

    @abc.abstractmethod
    def boot(self) -> Guest:
        """A running guest, freshly booted where the target can (a libvirt domain is started if it is off)."""

    def close(self) -> None:
        """Release whatever the target holds (connections, scratch directories)."""
