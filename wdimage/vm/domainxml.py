"""What wdimage reads from a libvirt domain's XML, without libvirt itself (wdimage.vm.libvirt_guest is the one
module that uses libvirt-python): the watchdog devices it has, and q35's iTCO enabled through qemu:commandline."""

import xml.etree.ElementTree as ET

from wdimage.models import Action, Model, action_info, info


def watchdogs(xml: str) -> list[dict]:
    """The domain's <watchdog> devices: [{"model": ..., "action": ...}] (libvirt's default action is reset)."""
    root = ET.fromstring(xml)
    default = action_info(Action.RESET).libvirt
    return [{"model": w.get("model"), "action": w.get("action") or default} for w in root.iterfind("devices/watchdog")]


def domain_watchdog(xml: str) -> dict | None:
    """The watchdog a domain really has: its first <watchdog>, or q35's iTCO enabled through qemu:commandline."""
    found = watchdogs(xml)
    return found[0] if found else _qemu_commandline_watchdog(xml)


QEMU_NS = "{http://libvirt.org/schemas/domain/qemu/1.0}"


def qemu_args(xml: str) -> list[str]:
    """The domain's <qemu:commandline> arguments, in order."""
    return [a.get("value") or "" for a in ET.fromstring(xml).iter(f"{QEMU_NS}arg")]


def qemu_watchdog_actions(args: list[str]) -> list[str]:
    """The actions `-action watchdog=A` sets among qemu:commandline's arguments (QEMU takes the last)."""
    return [a.split("=", 1)[1] for a in args if a.startswith("watchdog=")]


def _qemu_commandline_watchdog(xml: str) -> dict | None:
    """q35's iTCO as wdimage writes it for libvirt 9.0: -global ICH9-LPC.noreboot=false [-action watchdog=A]."""
    args = qemu_args(xml)
    if "ICH9-LPC.noreboot=false" not in args:
        return None
    actions = qemu_watchdog_actions(args)
    default = action_info(Action.RESET).libvirt
    return {"model": info(Model.ITCO).libvirt_model, "action": actions[-1] if actions else default}


# virDomainState as words (virsh's, without the space)
DOMAIN_STATES = {0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
                 6: "crashed", 7: "pmsuspended"}
