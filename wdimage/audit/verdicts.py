"""The audit's verdicts, one row each: what it means, what it adds to the exit code, its Prometheus value, its
JUnit outcome and the fix to show when the finding brings none of its own. A new verdict is one row here (`proven`
and `proof-failed` are `audit --prove`'s: wdimage.audit.prove); every output renders whatever row a DomainAudit
holds."""

import dataclasses
import enum


class Verdict(enum.StrEnum):
    ARMED = "armed"
    NOT_ARMED = "not-armed"
    CANNOT_FIRE = "cannot-fire"
    UNKNOWN = "unknown"
    ERROR = "error"
    PROVEN = "proven"  # audit --prove: armed, and the watchdog was seen to fire (wdimage.audit.prove)
    PROOF_FAILED = "proof-failed"  # audit --prove: looked armed, but the proof did not see it fire and come back


class JunitOutcome(enum.StrEnum):
    PASSED = "passed"
    FAILURE = "failure"
    SKIPPED = "skipped"
    ERROR = "error"


@dataclasses.dataclass(frozen=True)
class VerdictRow:
    verdict: Verdict
    meaning: str
    exit_code: int  # what it contributes to the audit's exit code (the highest wins)
    armed_value: int  # wdimage_watchdog_armed's value for a domain with this verdict
    junit: JunitOutcome
    fix: str  # {domain} and {host} are filled in; shown when the finding brings no fix of its own
    severity: int  # the table sorts the worst first


VERDICTS: dict[Verdict, VerdictRow] = {r.verdict: r for r in [
    VerdictRow(Verdict.ARMED, "the guest feeds the device the domain acts on, and that device can fire", 0, 1,
               JunitOutcome.PASSED, "", 0),
    VerdictRow(Verdict.NOT_ARMED, "nothing would reset this guest if it hung: the first failing check says why",
               1, 0, JunitOutcome.FAILURE, "wdimage drill --libvirt {domain} --fault healthy --connect {host} "
               "walks the checklist with a fix for each step", 4),
    VerdictRow(Verdict.CANNOT_FIRE, "the guest feeds its watchdog, but the host will not act when it expires",
               1, 0, JunitOutcome.FAILURE, "give the domain a device that can fire (<watchdog model=\"i6300esb\" "
               "action=\"reset\"/>) and an action that recovers (reset)", 3),
    VerdictRow(Verdict.UNKNOWN, "the host side alone: the guest could not be asked (no guest agent, or shut off)",
               1, 0, JunitOutcome.SKIPPED, "add the guest agent's channel (<channel type=\"unix\"><target "
               "type=\"virtio\" name=\"org.qemu.guest_agent.0\"/></channel>, virsh edit {domain}) and the "
               "qemu-guest-agent package in the guest, then audit again", 2),
    VerdictRow(Verdict.PROVEN, "armed, and proven: with the action set to none for a moment and the daemon frozen, "
               "the watchdog fired; then re-armed, the action restored, quiet for a window", 0, 1,
               JunitOutcome.PASSED, "", -1),
    VerdictRow(Verdict.PROOF_FAILED, "it looked armed, but the proof did not see the watchdog fire, or could not "
               "leave it re-armed: the reason says which step", 1, 0, JunitOutcome.FAILURE,
               "wdimage drill --libvirt {domain} --safe --connect {host} shows each step and its fix", 4),
    VerdictRow(Verdict.ERROR, "the audit could not finish for this domain or host: the cause is given", 1, 0,
               JunitOutcome.ERROR, "check that virsh -c {host} list answers, and that the guest agent answers "
               "(virsh -c {host} qemu-agent-command {domain} '{{\"execute\":\"guest-ping\"}}')", 5),
]}


def row(verdict: Verdict | str) -> VerdictRow:
    return VERDICTS[Verdict(verdict)]


def exit_code(verdicts) -> int:
    """0 when every domain is armed (and there is at least one), else the highest contribution."""
    codes = [row(v).exit_code for v in verdicts]
    return max(codes) if codes else 1
