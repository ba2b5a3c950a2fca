"""The QEMU-emulated watchdog models and actions, in one table shared by every command: each row names the
thing in every vocabulary wdimage speaks (QEMU, libvirt, OpenStack, KubeVirt, Proxmox VE); the reverse look-ups
are derived here. A new model or action is one row; a platform that cannot express one says why (`Cannot`)."""

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
class Cannot:
    """A platform's column where it has no word for the model or action: why (the file is then left out)."""

    why: str


# KubeVirt v1 `spec.domain.devices.watchdog` (api/openapi-spec/swagger.json, v1.Watchdog / v1.I6300ESBWatchdog).
_KUBEVIRT_MODELS = "KubeVirt's watchdog device is i6300esb on x86 (diag288 on s390x) only"
_KUBEVIRT_ACTIONS = "KubeVirt's watchdog actions are poweroff, reset and shutdown only"
# Proxmox VE qm.conf(5) `watchdog: [[model=]<i6300esb|ib700>] [,action=<reset|shutdown|poweroff|pause|debug|none>]`.
_PROXMOX_MODELS = "Proxmox VE's watchdog model is i6300esb or ib700 only (qm.conf(5))"
_PROXMOX_ACTIONS = "Proxmox VE's watchdog action is reset, shutdown, poweroff, pause, debug or none only (qm.conf(5))"


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
    kubevirt: str | Cannot = Cannot(_KUBEVIRT_MODELS)  # the key under KubeVirt's devices.watchdog
    proxmox: str | Cannot = Cannot(_PROXMOX_MODELS)  # qm.conf's watchdog model=
    # After a fire that does not reset the guest (action none, debug, pause then resume): True where QEMU leaves
    # the device stopped so that a keepalive does not restart it, and only re-opening /dev/watchdog (the driver's
    # start) arms it again; False where the next keepalive re-arms it (see MODELS for QEMU's code).
    reopen_after_fire: bool = False
    bus: str = ""  # how the guest reaches it: PCI, ISA, or the machine's own LPC bridge
    nova: bool = False  # OpenStack Nova's libvirt driver emulates it for hw_watchdog_action (only i6300esb)


# reopen_after_fire, from QEMU 7.2's code:
# - i6300esb (hw/watchdog/wdt_i6300esb.c): after the second stage i6300esb_timer_expired() calls
#   i6300esb_reset(), which clears `enabled`; a keepalive (the reload register) restarts only an enabled timer,
#   and only the driver's start (re-opening /dev/watchdog) sets the enable bit again. Measured (DESIGN.md).
# - ib700 (hw/watchdog/wdt_ib700.c): ib700_timer_expired() deletes the timer, but every keepalive of the
#   ib700wdt driver is a write to the enable port 0x443, whose handler timer_mod()s it again.
# - iTCO (hw/acpi/tco.c): tco_timer_expired() stops the timer after the second countdown, but a write to
#   TCO_RLD (the iTCO_wdt driver's keepalive on the ICH9's TCO v2) reloads it whenever TCO_TMR_HLT is clear and
#   the timer value is above 1 (can_start_tco_timer(); SECOND_TO_STS does not stop it).
MODELS: dict[Model, ModelInfo] = {
    Model.I6300ESB: ModelInfo(Model.I6300ESB, "I6300ESB_WDT", "i6300esb", "i6300esb", "pc",
                              (1, 2046), "i6300esb", "i6300esb.config", identity="i6300ESB timer", bus="PCI",
                              nova=True, kubevirt="i6300esb", proxmox="i6300esb", reopen_after_fire=True),
    Model.IB700: ModelInfo(Model.IB700, "IB700_WDT", "ib700wdt", "ib700", "pc",
                           (1, 30), "ib700", "ib700.config", identity="IB700 WDT", bus="ISA", proxmox="ib700",
                           reopen_after_fire=False),
    # q35's ICH9 LPC bridge has the iTCO watchdog built in; it needs -global ICH9-LPC.noreboot=false.
    Model.ITCO: ModelInfo(Model.ITCO, "ITCO_WDT", "iTCO_wdt", None, "q35",
                          (1, 613), "itco", "itco.config", identity="iTCO_wdt", stages=2,
                          bus="LPC (built into q35's ICH9)", reopen_after_fire=False),
}

# With no --model, the seed article's menu: the core plus both classic drivers.
DEFAULT_MODELS: tuple[Model, ...] = (Model.I6300ESB, Model.IB700)


def info(model: Model | str) -> ModelInfo:
    return MODELS[Model(model)]


def model_from_libvirt(name: str) -> Model | None:
    """libvirt's <watchdog model=> as wdimage's model; None for those not drilled (diag288: s390x)."""
    return next((m.model for m in MODELS.values() if m.libvirt_model == name), None)


@dataclasses.dataclass(frozen=True)
class ActionInfo:
    action: Action  # its value is QEMU's word (-action watchdog=, the QMP WATCHDOG event's action)
    effect: str  # what QEMU does when the watchdog fires, and what the user then sees
    recovers: bool  # does the guest come back on its own after a crash?
    libvirt: str | None  # libvirt's <watchdog action=>; None: libvirt has no such action
    openstack: str | None  # OpenStack's hw_watchdog_action image property; None: no equivalent
    libvirt_event: int  # libvirt's virDomainEventWatchdogAction number in its watchdog event
    libvirt_also: tuple[str, ...] = ()  # other libvirt actions that QEMU carries out as this one
    kubevirt: str | Cannot = Cannot(_KUBEVIRT_ACTIONS)  # KubeVirt's watchdog action
    proxmox: str | Cannot = Cannot(_PROXMOX_ACTIONS)  # qm.conf's watchdog action=


ACTIONS: dict[Action, ActionInfo] = {a.action: a for a in [
    ActionInfo(Action.RESET, "QEMU resets the guest, which boots again", True, "reset", "reset", 2,
               kubevirt="reset", proxmox="reset"),
    ActionInfo(Action.SHUTDOWN, "QEMU sends an ACPI power-button request: a crashed guest cannot obey it and "
                                "stays down", False, "shutdown", "poweroff", 4,
               kubevirt="shutdown", proxmox="shutdown"),
    ActionInfo(Action.POWEROFF, "QEMU powers the guest off and exits", False, "poweroff", "poweroff", 3,
               kubevirt="poweroff", proxmox="poweroff"),
    # libvirt's "dump" is QEMU's pause, after which libvirt dumps the guest's memory and resumes it.
    ActionInfo(Action.PAUSE, "QEMU pauses the guest (run state 'watchdog') until someone resumes or resets it",
               False, "pause", "pause", 1, libvirt_also=("dump",), proxmox="pause"),
    ActionInfo(Action.DEBUG, "QEMU prints a debug message and does nothing else: the guest stays hung", False,
               None, None, 5, proxmox="debug"),
    ActionInfo(Action.NONE, "QEMU does nothing but report the event: the guest stays hung", False,
               "none", "none", 0, proxmox="none"),
    ActionInfo(Action.INJECT_NMI, "QEMU injects an NMI: a live kernel logs it, a crashed one stays hung", False,
               "inject-nmi", None, 6),
]}


def action_info(action: Action | str) -> ActionInfo:
    return ACTIONS[Action(action)]


def platform_words(column: str, model: Model | str, action: Action | str) -> tuple[str, str] | Cannot:
    """A platform's (model, action) words, read off the rows' `column` (kubevirt, proxmox); Cannot (why) where
    it has no word for one of them: wdimage never maps it to something else."""
    words = (getattr(info(model), column), getattr(action_info(action), column))
    missing = [f"{value}: {word.why}" for value, word in zip((model, action), words) if isinstance(word, Cannot)]
    return Cannot("; ".join(missing)) if missing else words


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
