"""The seed comment thread's checklist, answered for a guest that is not ready, each failure with its fix.

The seed's reader had a watchdog device and a daemon, and nothing happened: the answer was the commented-out
`watchdog-device` line. Someone in that position asks, in order: is the device in the VM at all? did the
kernel find it (dmesg)? is the module loaded? is there a /dev/watchdog? is the service running? is the
`watchdog-device` line active? who holds the device? This module turns the readiness checks (what the guest
showed) plus what the hypervisor has into those answers, each failure with the concrete fix.
"""

import dataclasses
import re

from wdimage.models import Model, info

# The readiness checks' names (wdimage's Check.name) in the order the checklist asks them.
ORDER = ("driver", "module", "device", "service", "config", "holder", "panic", "timeout")


@dataclasses.dataclass(frozen=True)
class Step:
    name: str
    question: str
    ok: bool
    seen: str
    fix: str = ""  # empty when ok

    def render(self, number: int) -> str:
        text = f"{number}. {self.question} {'yes' if self.ok else 'NO'}: {self.seen}"
        return text + (f"\n   fix: {self.fix}" if self.fix else "")


def device_step(domain: str, watchdog: dict | None, suggested_model: str = "i6300esb") -> Step:
    """Step 1: the watchdog device in the libvirt domain."""
    question = f"watchdog device in the domain {domain}?"
    if watchdog is None:
        return Step("domain", question, False, "the domain has no <watchdog> device", fix=domain_fix(domain, suggested_model))
    return Step("domain", question, True, f"model {watchdog['model']}, action {watchdog['action']}")


def domain_fix(domain: str, model: str = "i6300esb") -> str:
    return (f"add <watchdog model=\"{model}\" action=\"reset\"/> inside <devices> (virsh edit {domain}), then shut "
            f"the guest down and start it again (virsh shutdown {domain}; virsh start {domain}): a reboot from "
            f"inside the guest does not add devices")


def guest_steps(checks, model: Model) -> list[Step]:
    """Steps 2..: the guest's side, from the readiness checks (objects with name, title, passed, seen)."""
    by_name = {c.name: c for c in checks}
    steps = []
    for name in ORDER:
        check = by_name.get(name)
        if check is None:
            continue
        fix = "" if check.passed else _FIXES[name](model, check.seen)
        steps.append(Step(name, _QUESTIONS[name].format(module=info(model).module), check.passed, check.seen, fix))
    return steps


_QUESTIONS = {
    "driver": "driver in dmesg ({module})?",
    "module": "module {module} loaded?",
    "device": "/dev/watchdog present?",
    "service": "watchdog service running?",
    "config": "watchdog-device = /dev/watchdog active in /etc/watchdog.conf?",
    "holder": "the watchdog daemon holds /dev/watchdog?",
    "panic": "the kernel leaves a panic to the watchdog (kernel.panic = 0)?",
    "timeout": "the device's timeout is watchdog.conf's watchdog-timeout?",
}


def _driver_fix(model: Model, seen: str) -> str:
    module = info(model).module
    if "minor" in seen or "misc" in seen:
        other = "ib700wdt" if model is not Model.IB700 else "i6300esb"
        return (f"another watchdog driver took the misc minor 130 first: keep {other} from loading "
                f"(echo 'blacklist {other}' > /etc/modprobe.d/wdimage-watchdog.conf) and reboot")
    return (f"the kernel did not report {module}: load it (modprobe {module}); if modprobe finds no module, the "
            f"guest's kernel lacks CONFIG_{info(model).kconfig_symbol} (wdimage kernel-config --check --model "
            f"{model}); if it loads but finds no device, the domain's model is not {model}")


def _config_fix(model: Model, seen: str) -> str:
    commented = re.search(r"(\d+):\s*#\s*watchdog-device\s*=\s*(\S+)", seen)
    if commented:
        line = commented.group(1)
        return (f"/etc/watchdog.conf line {line} has the device line commented out (the seed's bug): "
                f"sed -i '{line}s/^[[:space:]]*#[[:space:]]*//' /etc/watchdog.conf && systemctl restart watchdog")
    return ("add the line `watchdog-device = /dev/watchdog` to /etc/watchdog.conf, then restart the service "
            "(systemctl restart watchdog)")


def _holder_fix(model: Model, seen: str) -> str:
    if "no process holds" in seen:
        return "nobody holds the device: the daemon is not running or has no device line (fix the steps above)"
    return (f"another process holds the device ({seen}); /dev/watchdog has a single opener: stop it "
            f"(systemd: RuntimeWatchdogSec= in /etc/systemd/system.conf; wd_keepalive: systemctl stop "
            f"wd_keepalive) and restart the watchdog service")


_FIXES = {
    "driver": _driver_fix,
    "module": lambda model, seen: (
        f"modprobe {info(model).module}; to load it at every boot: echo {info(model).module} > "
        f"/etc/modules-load.d/watchdog.conf (systemd) or add it to /etc/conf.d/modules (OpenRC)"),
    "device": lambda model, seen: (
        "no /dev/watchdog: the driver did not register a device (see the driver and module steps); with "
        "several watchdogs, the first is /dev/watchdog0 as well"),
    "service": lambda model, seen: (
        "systemctl enable --now watchdog (OpenRC: rc-update add watchdog default; rc-service watchdog start); "
        "if it fails at once, journalctl -u watchdog says why (often the device line below)"),
    "config": _config_fix,
    "holder": _holder_fix,
    "panic": lambda model, seen: (
        "the kernel reboots itself after a panic, before the watchdog fires: sysctl -w kernel.panic=0 and "
        "drop panic= from the kernel command line"),
    "timeout": lambda model, seen: (
        "the device runs with another timeout than watchdog.conf's watchdog-timeout: set watchdog-timeout "
        "within the driver's range and restart the service"),
}
