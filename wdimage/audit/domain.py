"""One domain's audit: the host side (wdimage.audit.host), then, for a running guest with an agent channel,
the guest side through the read-only view (one guest-exec of wdimage.drill.checks.GUEST_PROBE), then one
verdict with the first failing finding and its fix.

DomainAudit is the per-domain result every output renders; its verdict can be upgraded later (`audit --prove`
turning armed into proven) with upgrade(), which keeps what it was before."""

import dataclasses
import time

from wdimage.audit.host import HostSide, action_fix, add_device_fix, analyse, override_fix
from wdimage.audit.verdicts import Verdict, row
from wdimage.drill.checks import (
    GUEST_PROBE,
    Check,
    configured_timeout,
    evaluate_checks,
    evaluate_field_checks,
    parse_sections,
)
from wdimage.models import info

# The guest's checks in the order the audit reports the first failure, and whether a failure decides the verdict
# (not-armed) or is an advisory note (the guest is still protected, but something will surprise its operator).
AUDIT_CHECKS: tuple[tuple[str, bool], ...] = (
    ("blacklist", True), ("driver", True), ("module", True), ("device", True), ("service", True),
    ("config", True), ("runtime-watchdog", True), ("other-holder", True), ("holder", True), ("acted-on", True),
    ("timeout-range", True),
    ("identity", False), ("timeout", False), ("panic", False), ("kexec", False), ("nowayout", False),
)
DECIDES = {name for name, decides in AUDIT_CHECKS if decides}
PROBE_SCRIPTS = frozenset({GUEST_PROBE})  # the only script the read-only view may guest-exec


@dataclasses.dataclass
class DomainAudit:
    host: str  # the connection URI as given (or libvirt's default)
    domain: str
    verdict: Verdict = Verdict.UNKNOWN
    reason: str = ""  # the first failing finding, one line
    fix: str = ""  # its fix (else the verdict row's)
    state: str = ""  # running, shutoff, paused, ...
    machine: str = ""
    model: str | None = None  # the device the audit holds the guest to (libvirt's word)
    action: str | None = None
    devices: list[dict] = dataclasses.field(default_factory=list)
    agent_channel: bool = False
    checks: list[Check] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)  # advisories: failing checks that do not decide
    timeout: int | None = None  # the device's timeout in the guest (sysfs), seconds
    seconds: float = 0.0  # how long this domain's audit took
    timings: dict[str, float] = dataclasses.field(default_factory=dict)  # where those seconds went, by step
    history: list[dict] = dataclasses.field(default_factory=list)  # verdicts it had before an upgrade

    def decide(self, verdict: Verdict, reason: str, fix: str = "") -> "DomainAudit":
        self.verdict, self.reason, self.fix = verdict, reason, fix
        return self

    def upgrade(self, verdict: Verdict | str, reason: str, fix: str = "") -> None:
        """A later step's verdict (e.g. a proof on an armed domain): the earlier one is kept in history."""
        self.history.append({"verdict": str(self.verdict), "reason": self.reason})
        self.decide(Verdict(verdict), reason, fix)

    @property
    def shown_fix(self) -> str:
        return self.fix or row(self.verdict).fix.format(domain=self.domain, host=self.host)


def error_result(host: str, domain: str, cause: str, seconds: float = 0.0) -> DomainAudit:
    return DomainAudit(host, domain, seconds=seconds).decide(Verdict.ERROR, cause)


def audit_domain(host: str, view, name: str, qemu, libvirt, deadline: float) -> DomainAudit:
    """The audit of one domain through a wdimage.vm.libvirt_guest.ReadOnlyHost `view`, within `deadline` s."""
    from wdimage.vm.libvirt_guest import AgentUnavailable  # the optional libvirt-python, only where it is used

    started = time.monotonic()
    result = DomainAudit(host, name)
    domain = view.domain(name)
    result.state = domain.state()
    side = analyse(domain.xml(), qemu, libvirt)
    result.timings["host side"] = time.monotonic() - started
    _describe_host(result, side)
    primary = side.primary
    if primary is None and side.devices:
        result.decide(Verdict.UNKNOWN, f"watchdog model {side.devices[0].model} is not one wdimage audits "
                                       f"(i6300esb, ib700, itco)")
    elif primary is None:
        result.decide(Verdict.NOT_ARMED, "the domain has no watchdog device: nothing can reset it when it hangs",
                      add_device_fix(name))
    elif result.state != "running":
        result.decide(Verdict.UNKNOWN, f"{result.state}: the guest side cannot be read; host side: "
                                       f"{_host_summary(primary)}", _host_fix(name, primary))
    elif not side.agent_channel:
        result.decide(Verdict.UNKNOWN, f"no guest agent channel: the guest side cannot be read; host side: "
                                       f"{_host_summary(primary)}")
    else:
        try:
            _guest_side(result, domain, side, started + deadline - time.monotonic())
        except AgentUnavailable as e:
            if e.connected:
                raise
            result.decide(Verdict.UNKNOWN, f"{e}: is qemu-guest-agent running in the guest? host side: "
                                           f"{_host_summary(primary)}",
                          "install and start qemu-guest-agent in the guest (systemctl enable --now "
                          "qemu-guest-agent), then audit again")
    result.seconds = time.monotonic() - started
    return result


def _describe_host(result: DomainAudit, side: HostSide) -> None:
    result.machine = side.machine
    result.agent_channel = side.agent_channel
    result.devices = [dataclasses.asdict(d) for d in side.devices]
    if side.primary:
        result.model, result.action = side.primary.model, side.primary.action


def _host_summary(device) -> str:
    if not device.fires:
        return f"and even if fed, {device.why}"
    if not device.recovers:
        return f"and even if fed, action {device.action}: {device.action_effect}"
    return f"{device.model}, action {device.action}, can fire"


def _host_fix(domain: str, device) -> str:
    if not device.fires:
        return override_fix(domain)
    if not device.recovers:
        return action_fix(domain, device.action)
    return ""


def _guest_side(result: DomainAudit, domain, side: HostSide, left: float) -> None:
    model = side.primary.known_model
    began = time.monotonic()
    domain.agent("guest-ping", timeout=min(5.0, max(1.0, left)))
    result.timings["agent ping"] = time.monotonic() - began
    probe = domain.run(GUEST_PROBE, info(model).module, timeout=max(1.0, left - 1))
    result.timings["guest probe"] = time.monotonic() - began - result.timings["agent ping"]
    judge_guest(result, parse_sections(probe.stdout), side)


def judge_guest(result: DomainAudit, sections: dict[str, str], side: HostSide) -> DomainAudit:
    """The verdict of a guest whose probe answered: the first deciding check that failed (not-armed), else what
    the host does with the fed device (cannot-fire: it cannot fire, or its action recovers nothing), else armed."""
    _describe_host(result, side)
    primary = side.primary
    model = primary.known_model
    timeout, _ = configured_timeout(sections)
    by_name = {c.name: c for c in evaluate_checks(sections, model, timeout) + evaluate_field_checks(sections, model)}
    result.checks = [by_name[name] for name, _ in AUDIT_CHECKS if name in by_name]
    seen = sections.get("timeout", "").strip()
    result.timeout = int(seen) if seen.isdigit() else None
    result.notes = [f"{c.title}: {c.seen}" + (f" (fix: {c.fix})" if c.fix else "")
                    for c in result.checks if not c.passed and c.name not in DECIDES]
    failed = next((c for c in result.checks if not c.passed and c.name in DECIDES), None)
    if failed is not None:
        result.decide(Verdict.NOT_ARMED, f"{failed.title}: no ({failed.seen})", failed.fix)
    elif not primary.fires:
        result.decide(Verdict.CANNOT_FIRE, f"fed, but {primary.why}", override_fix(result.domain))
    elif not primary.recovers:
        result.decide(Verdict.CANNOT_FIRE, f"fed, but action {primary.action}: {primary.action_effect}",
                      action_fix(result.domain, primary.action))
    else:
        result.decide(Verdict.ARMED, f"the daemon feeds {primary.model} ({primary.why}), action {primary.action}")
    return result
