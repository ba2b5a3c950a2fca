"""The QEMU-emulated watchdog models and actions, in one table shared by every command: each row names the
thing in every vocabulary wdimage speaks (QEMU, libvirt, OpenStack); the reverse look-ups are derived here.
A new model or action is one row."""

import dataclasses
import enum


class Model(enum.StrEnum):
    I6300ESB = "i6300esb"
    IB700 = "ib700"
    ITCO = "itco"


class Action(enum.StrEnum):
    """QEMU's `-action watchdog=ACTION` values."""

    RESET = "reset"
    SHUTDOWN = "shutdown"
    POWEROFF = "poweroff"
    PAUSE = "pause"
    DEBUG = "debug"
    NONE = "none"
    INJECT_NMI = "inject-nmi"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    model: Model
    kconfig_symbol: str  # the driver's Kconfig symbol, without CONFIG_
    module: str  # the kernel module name
    qemu_device: str | None  # `-device NAME`; None where the machine has it built in
    machine: str  # QEMU machine type the device lives on
    timeout_range: tuple[int, int]  # seconds the driver accepts
    libvirt_model: str  # libvirt's <watchdog model=>
    fragment: str  # file name in kconfig-fragments/
    identity: str = ""  # what the driver reports in /sys/class/watchdog/watchdogN/identity
    stages: int = 1  # countdowns of the programmed timeout before the reset (the ICH9 TCO counts down twice)


MODELS: dict[Model, ModelInfo] = {
    Model.I6300ESB: ModelInfo(Model.I6300ESB, "I6300ESB_WDT", "i6300esb", "i6300esb", "pc",
                              (1, 2046), "i6300esb", "i6300esb.config", identity="i6300ESB timer"),
    Model.IB700: ModelInfo(Model.IB700, "IB700_WDT", "ib700wdt", "ib700", "pc",
                           (1, 30), "ib700", "ib700.config", identity="IB700 WDT"),
    # q35's ICH9 LPC bridge has the iTCO watchdog built in; it needs -global ICH9-LPC.noreboot=false.
    Model.ITCO: ModelInfo(Model.ITCO, "ITCO_WDT", "iTCO_wdt", None, "q35",
                          (1, 613), "itco", "itco.config", identity="iTCO_wdt", stages=2),
}

# With no --model, the seed article's menu: the core plus both classic drivers.
DEFAULT_MODELS: tuple[Model, ...] = (Model.I6300ESB, Model.IB700)


def info(model: Model | str) -> ModelInfo:
    return MODELS[Model(model)]


def model_from_libvirt(name: str) -> Model | None:
    """libvirt's <watchdog model=> as wdimage's model; None for those not drilled (diag288: s390x)."""
    return next((m.model for m in MODELS.values() if m.libvirt_model == name), None)


class Recovery(enum.StrEnum):
    """What becomes of a hung guest when the watchdog fires with an action (the audit's cannot-fire reasons)."""

    ITSELF = "itself"  # the guest boots again by itself
    STOPS = "stops"  # the guest is powered off: down, not hung; whatever restarts domains can start it again
    RESUME = "only-if-resumed"  # paused until someone resumes or resets it; a resumed hung guest is still hung
    NEVER = "never"  # nothing happens that a hung guest could recover from


@dataclasses.dataclass(frozen=True)
class ActionInfo:
    action: Action  # its value is QEMU's word (-action watchdog=, the QMP WATCHDOG event's action)
    effect: str  # what QEMU does when the watchdog fires, and what the user then sees
    recovery: Recovery  # does a hung guest come back after the watchdog fires (and who brings it back)?
    libvirt: str | None  # libvirt's <watchdog action=>; None: libvirt has no such action
    openstack: str | None  # OpenStack's hw_watchdog_action image property; None: no equivalent
    libvirt_event: int  # libvirt's virDomainEventWatchdogAction number in its watchdog event
    libvirt_also: tuple[str, ...] = ()  # other libvirt actions that QEMU carries out as this one

    @property
    def recovers(self) -> bool:
        """Does the guest come back on its own after a crash?"""
        return self.recovery is Recovery.ITSELF

    @property
    def host_acts(self) -> bool:
        """Does the host do something a hung guest gets out of (a reset, or a power-off an orchestrator sees)?"""
        return self.recovery in (Recovery.ITSELF, Recovery.STOPS)


ACTIONS: dict[Action, ActionInfo] = {a.action: a for a in [
    ActionInfo(Action.RESET, "QEMU resets the guest, which boots again", Recovery.ITSELF, "reset", "reset", 2),
    ActionInfo(Action.SHUTDOWN, "QEMU sends an ACPI power-button request: a crashed guest cannot obey it and "
                                "stays down", Recovery.NEVER, "shutdown", "poweroff", 4),
    ActionInfo(Action.POWEROFF, "QEMU powers the guest off and exits", Recovery.STOPS, "poweroff", "poweroff", 3),
    # libvirt's "dump" is QEMU's pause, after which libvirt dumps the guest's memory and resumes it.
    ActionInfo(Action.PAUSE, "QEMU pauses the guest (run state 'watchdog') until someone resumes or resets it",
               Recovery.RESUME, "pause", "pause", 1, libvirt_also=("dump",)),
    ActionInfo(Action.DEBUG, "QEMU prints a debug message and does nothing else: the guest stays hung",
               Recovery.NEVER,
               None, None, 5),
    ActionInfo(Action.NONE, "QEMU does nothing but report the event: the guest stays hung", Recovery.NEVER,
               "none", "none", 0),
    ActionInfo(Action.INJECT_NMI, "QEMU injects an NMI: a live kernel logs it, a crashed one stays hung",
               Recovery.NEVER,
               "inject-nmi", None, 6),
]}


def action_info(action: Action | str) -> ActionInfo:
    return ACTIONS[Action(action)]


def action_from_qemu(word: str | None) -> Action | None:
    """QEMU's word for what it did when the watchdog fired (the QMP WATCHDOG event's action) as an Action; None
    for no word, or for one this wdimage does not know."""
    return next((a for a in Action if a.value == word), None)


def action_from_libvirt(name: str) -> Action | None:
    """libvirt's <watchdog action=> as the QEMU action that carries it out; None for a word libvirt lacks."""
    return next((a.action for a in ACTIONS.values() if name == a.libvirt or name in a.libvirt_also), None)


def action_from_libvirt_event(number: int) -> Action | None:
    """The action in libvirt's watchdog event (virDomainEventWatchdogAction); None for a number not known here."""
    return next((a.action for a in ACTIONS.values() if a.libvirt_event == number), None)


def action_warning(action: Action | str) -> str | None:
    """For a build: a warning when the action cannot bring a crashed guest back, naming the better choice."""
    about = action_info(action)
    if about.recovers:
        return None
    return (f"--action {about.action}: {about.effect}; a crashed guest will not recover by itself "
            f"(use --action reset for that; OpenStack: hw_watchdog_action=reset)")


def timeout_note(model: Model | str, timeout: int) -> str | None:
    """For a build: where the reset comes later than the timeout suggests."""
    stages = info(model).stages
    if stages == 1:
        return None
    return (f"--model {model}: the ICH9 TCO timer counts down {stages} times, so the reset comes about "
            f"{stages * timeout}s after the last keepalive with --timeout {timeout}")
