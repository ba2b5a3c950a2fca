"""The host side of the audit, from a domain's XML and the host's versions alone: which watchdog devices the
guest has, what each does when it fires, and whether it can fire at all.

- every <watchdog model= action=> of the XML (libvirt's default action is reset);
- q35's ICH9 LPC bridge always has the iTCO built in, with or without a <watchdog>: QEMU's `ICH9-LPC.noreboot`
  property decides whether its timeout resets anything. Where the QEMU version and machine type pin it to true
  (NOREBOOT_PINS) the iTCO "looks armed but cannot fire", unless the domain passes
  `-global ICH9-LPC.noreboot=false` (qemu:commandline) or a libvirt that turns the pin off for its itco model
  (LIBVIRT_ITCO);
- the action: QEMU's `-action watchdog=` is one for the whole machine (libvirt passes the first <watchdog>'s,
  qemu:commandline may pass another), and models.ACTIONS says whether a hung guest recovers from it;
- the guest agent's channel (org.qemu.guest_agent.0): without it the guest side cannot be read.
"""

import dataclasses
import re
import xml.etree.ElementTree as ET

from wdimage.models import Action, Model, action_from_libvirt, action_info, info, model_from_libvirt
from wdimage.vm.domainxml import qemu_args, qemu_watchdog_actions, watchdogs

AGENT_CHANNEL = "org.qemu.guest_agent.0"
Version = tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class NorebootPin:
    """QEMU versions [qemu_from, qemu_until) whose matching q35 machine types default ICH9-LPC.noreboot to true."""

    qemu_from: Version
    qemu_until: Version | None
    machines: str  # a full-match pattern of the machine types pinned
    source: str


NOREBOOT_PINS = (
    NorebootPin((0, 0, 0), (8, 0, 0), r"(pc-)?q35(-.*)?",
                "measured on QEMU 7.2: pc-q35-7.2 and pc-q35-7.1, no WATCHDOG event in 90 s without "
                "-global ICH9-LPC.noreboot=false, one after 22.9 s with it (DESIGN.md)"),
    NorebootPin((8, 0, 0), None, r"pc-q35-([1-6]\.\d+|7\.[0-2])",
                "QEMU 8.0 and later default the pin to false for their own machine types only; the compat "
                "properties of the older ones keep it true (from QEMU's history, not measured here)"),
)


@dataclasses.dataclass(frozen=True)
class LibvirtItco:
    """libvirt versions from which a <watchdog model='itco'> makes libvirt itself turn the noreboot pin off."""

    libvirt_from: Version
    source: str


LIBVIRT_ITCO = LibvirtItco((9, 1, 0), "libvirt 9.1 added the itco model (implicit on q35) and passes "
                                      "ICH9-LPC.noreboot=off with it (from libvirt's history; this machine has 9.0)")


def noreboot_pinned(qemu: Version, machine: str) -> NorebootPin | None:
    """The row that pins noreboot to true for this QEMU and machine type, or None."""
    return next((p for p in NOREBOOT_PINS if p.qemu_from <= qemu and (p.qemu_until is None or qemu < p.qemu_until)
                 and re.fullmatch(p.machines, machine)), None)


@dataclasses.dataclass(frozen=True)
class Device:
    """One watchdog the guest has, as the host sees it."""

    model: str  # libvirt's word (i6300esb, ib700, itco, diag288, ...)
    action: str  # libvirt's word for what the host does when it fires
    origin: str  # "xml" (<watchdog>), "q35" (built into the machine)
    fires: bool  # does its timeout reach the host at all
    why: str  # why it fires or not
    recovers: bool  # does the action get a hung guest out (reset; poweroff: down, for an orchestrator)
    action_effect: str

    @property
    def known_model(self) -> Model | None:
        return model_from_libvirt(self.model)


@dataclasses.dataclass(frozen=True)
class HostSide:
    machine: str  # as the XML has it (libvirt expands q35 to pc-q35-X.Y in a defined domain)
    devices: tuple[Device, ...]
    agent_channel: bool
    commandline_override: bool  # -global ICH9-LPC.noreboot=false in qemu:commandline

    @property
    def primary(self) -> Device | None:
        """The device the audit holds the guest to: the first <watchdog> of a model wdimage knows, else q35's."""
        known = [d for d in self.devices if d.known_model is not None]
        return next((d for d in known if d.origin == "xml"), known[0] if known else None)


def _action(libvirt_word: str) -> tuple[bool, str]:
    action = action_from_libvirt(libvirt_word)
    if action is None:
        return False, f"action {libvirt_word!r} is not one wdimage knows"
    about = action_info(action)
    return about.host_acts, about.effect


def analyse(xml: str, qemu: Version, libvirt: Version) -> HostSide:
    """The domain's watchdogs, each with whether it can fire and whether its action recovers a hung guest."""
    root = ET.fromstring(xml)
    os_type = root.find("os/type")
    machine = (os_type.get("machine") if os_type is not None else None) or ""
    args = qemu_args(xml)
    override = any(re.fullmatch(r"ICH9-LPC\.noreboot=(false|off|no)", a) for a in args)
    qemu_actions = qemu_watchdog_actions(args)
    default = action_info(Action.RESET).libvirt
    declared = [(w["model"] or "", w["action"]) for w in watchdogs(xml)]
    # QEMU has one watchdog action for the machine: qemu:commandline's wins, else libvirt's first <watchdog>'s.
    machine_action = qemu_actions[-1] if qemu_actions else declared[0][1] if declared else default
    devices = []
    for model, action in declared:
        if model == info(Model.ITCO).libvirt_model:
            continue  # the built-in one, described below
        recovers, effect = _action(machine_action)
        devices.append(Device(model, machine_action, "xml", True, f"<watchdog model=\"{model}\">", recovers, effect))
    if re.fullmatch(r"(pc-)?q35(-.*)?", machine):
        devices.append(_itco(machine, machine_action, override, any(m == "itco" for m, _ in declared), qemu,
                             libvirt))
    channel = any(t.get("name") == AGENT_CHANNEL for t in root.iterfind("devices/channel/target"))
    return HostSide(machine, tuple(devices), channel, override)


def _itco(machine: str, action: str, override: bool, declared: bool, qemu: Version, libvirt: Version) -> Device:
    recovers, effect = _action(action)
    pin = noreboot_pinned(qemu, machine)
    version = ".".join(map(str, qemu))
    if override:
        fires, why = True, "q35's iTCO, with -global ICH9-LPC.noreboot=false in qemu:commandline"
    elif declared and libvirt >= LIBVIRT_ITCO.libvirt_from:
        fires, why = True, f"<watchdog model=\"itco\">: {LIBVIRT_ITCO.source}"
    elif pin is not None:
        fires, why = False, (f"q35's built-in iTCO cannot fire: QEMU {version} pins ICH9-LPC.noreboot to true on "
                             f"{machine} and the domain does not pass -global ICH9-LPC.noreboot=false ({pin.source})")
    else:
        fires, why = True, f"q35's iTCO: QEMU {version} defaults ICH9-LPC.noreboot to false on {machine}"
    return Device("itco", action, "q35", fires, why, recovers, effect)


def override_fix(domain: str) -> str:
    return (f"either give {domain} a device that fires (<watchdog model=\"i6300esb\" action=\"reset\"/>, and "
            f"i6300esb in the guest), or let the iTCO fire: add xmlns:qemu=\"http://libvirt.org/schemas/domain/"
            f"qemu/1.0\" to <domain> and <qemu:commandline><qemu:arg value=\"-global\"/><qemu:arg "
            f"value=\"ICH9-LPC.noreboot=false\"/></qemu:commandline> (virsh edit {domain}; libvirt records this "
            f"as a custom-argv taint), then shut the domain down and start it again")


def action_fix(domain: str, action: str) -> str:
    return (f"set the action to reset: <watchdog ... action=\"reset\"/> (virsh edit {domain}; for q35's iTCO the "
            f"-action watchdog=reset of qemu:commandline), then shut the domain down and start it again; "
            f"{action} leaves a hung guest hung")


def add_device_fix(domain: str) -> str:
    return (f"add <watchdog model=\"i6300esb\" action=\"reset\"/> inside <devices> (virsh edit {domain}), shut the "
            f"guest down and start it again (a reboot from inside does not add devices); in the guest: the "
            f"i6300esb driver and the watchdog daemon with `watchdog-device = /dev/watchdog`")
