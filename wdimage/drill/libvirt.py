"""wdimage drill --libvirt DOMAIN: the drill on a libvirt domain that wdimage did not necessarily build.

What the drill expects comes from what the guest really has, not from a manifest: the domain's <watchdog>
(model and action; none: exit 1 with the XML to add), the guest's /etc/watchdog.conf (watchdog-timeout and
interval, read through the guest agent), and its kernel (the readiness checks: driver, module, device, service,
the device line, who holds the device). A guest that is not ready gets those checks answered one by one, in the
seed comment thread's order, each failure with its fix; the scenarios themselves are the same rows as for a
built image (wdimage.drill.scenarios), run by the same runner (wdimage.drill.runner.run_scenarios).

The domain is someone's machine: nothing that crashes, stops or pauses it runs without --yes-crash-it. The
harmless `proof` (--safe) changes the watchdog's action of the running domain for a moment, through libvirt-qemu's
monitor passthrough, which libvirt records as a taint on the domain.
"""

import re
from collections.abc import Sequence

from wdimage import log
from wdimage.drill.checks import Check
from wdimage.drill.runner import DrillReport, run_scenarios
from wdimage.drill.scenarios import SCENARIOS, Setup
from wdimage.drill.session import AGENT_TIMEOUT
from wdimage.errors import ExitCode, WdimageError, failure, usage_error
from wdimage.models import MODELS, action_from_libvirt, action_info, info, model_from_libvirt
from wdimage.vm.libvirt_guest import LibvirtTarget

DAEMON_DEFAULT_TIMEOUT = 60  # watchdog(8): watchdog-timeout when watchdog.conf does not set it
DAEMON_DEFAULT_INTERVAL = 1

# libvirt's own rules are looser; these are what wdimage passes on: a domain name, a connection URI.
DOMAIN_RE = re.compile(r"[A-Za-z0-9_.+:@-][A-Za-z0-9_.+:@ -]{0,199}")
URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9/._~:@%?&=+,;!$*'()-]*")

CONF_SH = ("grep -E '^[[:space:]]*(watchdog-timeout|interval)[[:space:]]*=' /etc/watchdog.conf 2>/dev/null; "
           "exit 0")


def check_options(domain: str, uri: str | None, faults: Sequence[str], yes_crash_it: bool) -> None:
    """Exit 2 before anything touches the domain: bad names, or faults without consent."""
    if not DOMAIN_RE.fullmatch(domain):
        raise usage_error(f"--libvirt {domain!r}: not a domain name (letters, digits, ' ._+:@-', at most 200)")
    if uri is not None and not URI_RE.fullmatch(uri):
        raise usage_error(f"--connect {uri!r}: not a libvirt URI (e.g. qemu:///system)")
    risky = [f for f in faults if not (f in SCENARIOS and SCENARIOS[f].harmless)]
    if risky and not yes_crash_it:
        raise usage_error(
            f"--yes-crash-it: the drill would run {', '.join(risky)} on the libvirt domain {domain}, which crashes, "
            f"stops or pauses someone's machine; give --yes-crash-it to allow it",
            hint="--safe proves the watchdog fires without restarting the guest; --fault healthy alone only "
                 "checks that the watchdog is armed and stays quiet")


def prove_domain(domain: str, uri: str | None = None) -> DrillReport:
    """The readiness checks and the `proof` on one running domain (what `drill --libvirt DOMAIN --safe` runs):
    the report's `proof` fault says whether its watchdog was seen to fire, and that it is protected again."""
    return drill_libvirt(domain, uri, ["proof"])


def domain_check(domain: str, watchdog: dict | None) -> Check:
    """The first question of the checklist: is there a watchdog device in the VM at all?"""
    title = f"watchdog device in the libvirt domain {domain}"
    if watchdog is None:
        return Check("domain", title, False, "the domain has no <watchdog> device", fix=add_watchdog_fix(domain))
    return Check("domain", title, True, f"<watchdog model=\"{watchdog['model']}\" action=\"{watchdog['action']}\"/>")


def add_watchdog_fix(domain: str) -> str:
    return (f"add <watchdog model=\"i6300esb\" action=\"reset\"/> inside <devices> (virsh edit {domain}), then "
            f"shut the guest down and start it again (virsh shutdown {domain}; virsh start {domain}): a reboot "
            f"from inside the guest does not add devices; in the guest, the i6300esb driver and the watchdog "
            f"daemon with `watchdog-device = /dev/watchdog`")


def expectations(domain: str, watchdog: dict, conf: str) -> tuple[Setup, list[str]]:
    """The Setup the drill holds the guest to, and notes on where each value came from."""
    model = model_from_libvirt(watchdog["model"])
    if model is None:
        raise failure(f"libvirt domain {domain}: watchdog model {watchdog['model']!r} is not one wdimage drills "
                      f"({', '.join(m.libvirt_model for m in MODELS.values() if m.libvirt_model)})")
    action = action_from_libvirt(watchdog["action"])
    if action is None:
        raise failure(f"libvirt domain {domain}: watchdog action {watchdog['action']!r} is not one wdimage knows")
    notes = []
    if watchdog["action"] != action_info(action).libvirt:  # dump, the one libvirt carries out as QEMU's pause
        notes.append(f"libvirt's action {watchdog['action']} pauses the guest (QEMU's {action}), dumps its memory "
                     f"and resumes it: expecting {action}")
    values = {}
    for line in conf.splitlines():
        match = re.fullmatch(r"\s*(watchdog-timeout|interval)\s*=\s*(\d+)\s*(#.*)?", line)
        if match:
            values[match.group(1)] = int(match.group(2))
    timeout = values.get("watchdog-timeout", DAEMON_DEFAULT_TIMEOUT)
    interval = values.get("interval", DAEMON_DEFAULT_INTERVAL)
    notes.append(f"expected from the domain: {watchdog['model']}, action {watchdog['action']}; from the guest's "
                 f"/etc/watchdog.conf: watchdog-timeout {timeout}s"
                 f"{'' if 'watchdog-timeout' in values else ' (not set: the daemon default)'}, interval {interval}s")
    low, high = info(model).timeout_range
    if not low <= timeout <= high:
        notes.append(f"watchdog-timeout {timeout}s is outside {model}'s range {low}..{high}: the driver will not "
                     f"take it")
    return Setup(name=domain, model=model, action=action, timeout=timeout, interval=interval), notes


def drill_libvirt(domain: str, uri: str | None, faults: Sequence[str], prepare: Sequence[str] = (),
                  yes_crash_it: bool = False) -> DrillReport:
    """Drill a libvirt domain (started if it is off; never stopped or undefined afterwards)."""
    check_options(domain, uri, faults, yes_crash_it)
    target = LibvirtTarget(domain, uri)
    try:
        watchdog = target.watchdog()
        if watchdog is None:
            raise failure(f"libvirt domain {domain} has no watchdog device: nothing can reset it when it hangs",
                          hint=add_watchdog_fix(domain))
        with log.step(f"Reading what {target.describe()} expects (its <watchdog>, the guest's watchdog.conf)"):
            guest = target.attach()
            try:
                guest.wait_agent(AGENT_TIMEOUT)
                conf = guest.run(CONF_SH, timeout=30).stdout
            except (TimeoutError, ConnectionError) as e:
                raise failure(f"libvirt domain {domain}: the guest agent does not answer ({e})",
                              hint="the drill needs the QEMU guest agent in the guest (package qemu-guest-agent) "
                                   "and its channel in the domain: <channel type=\"unix\"><target type=\"virtio\" "
                                   "name=\"org.qemu.guest_agent.0\"/></channel>") from None
            finally:
                guest.close()
            setup, notes = expectations(domain, watchdog, conf)
            for note in notes:
                log.info(note)
        report = DrillReport(target=target.describe(), setup=setup, faults_requested=[], warnings=notes[:-1],
                             machine=target.machine())
        try:
            run_scenarios(target, report, faults, prepare)
        except WdimageError as e:
            if e.code == ExitCode.USAGE:
                raise
            report.error = e.message
        report.checks = [domain_check(domain, watchdog), *report.checks]
        if target.started_at is None:  # it was running already: we did not see it boot
            report.boot_to_agent_seconds = report.boot_to_armed_seconds = None
            report.warnings.append("the domain was already running: no boot timings")
        return report
    finally:
        target.close()
