"""`audit --prove`: after the read-only audit, the proof of `drill --safe` (wdimage.drill.libvirt.prove_domain) on
every `armed` domain: the hypervisor's action set to none for a moment, the daemon frozen until the watchdog
fires, the device re-armed, the action restored, nothing firing for one window. `armed` becomes `proven`, or
`proof-failed` with what the proof saw. One domain per host at a time (each proof costs its guest about one
watchdog timeout without a keepalive); hosts side by side. This is the one part of the audit that changes
something: the proof's action switch goes through libvirt's monitor passthrough, which libvirt records as a
`custom-monitor` taint on the domain."""

import concurrent.futures
from collections.abc import Callable

from wdimage.audit.domain import DomainAudit
from wdimage.audit.verdicts import Verdict
from wdimage.errors import WdimageError


def _default_prove(domain: str, uri: str | None):
    from wdimage.drill.libvirt import prove_domain  # libvirt-python: only where a proof runs

    return prove_domain(domain, uri)


def prove_one(result: DomainAudit, prove: Callable = _default_prove) -> DomainAudit:
    """The proof on one armed domain; its verdict upgraded either way (the audit's kept in history)."""
    try:
        drill = prove(result.domain, result.host or None)
    except WdimageError as e:
        return _failed(result, f"the proof could not run: {e}")
    proof = next((f for f in drill.faults if f.fault == "proof"), None)
    if proof is None or proof.skipped:
        why = proof.skipped if proof is not None else "the readiness checks failed before it"
        return _failed(result, f"the proof did not run: {why}")
    if not (drill.passed and proof.passed):
        return _failed(result, f"the proof failed: {proof.detail or 'see wdimage drill --libvirt --safe'}")
    result.upgrade(Verdict.PROVEN, f"the watchdog fired {proof.seconds_to_reset:.1f}s after its daemon was frozen "
                                   f"(action none for that moment); re-armed, the action restored, quiet again")
    return result


def _failed(result: DomainAudit, reason: str) -> DomainAudit:
    result.upgrade(Verdict.PROOF_FAILED, reason,
                   fix=f"wdimage drill --libvirt {result.domain} --safe"
                       f"{' --connect ' + result.host if result.host else ''} shows each step and its fix")
    return result


def prove_armed(domains: list[DomainAudit], prove: Callable = _default_prove) -> None:
    """The proof on each armed domain: one at a time per host, the hosts concurrently."""
    by_host: dict[str, list[DomainAudit]] = {}
    for result in domains:
        if result.verdict is Verdict.ARMED:
            by_host.setdefault(result.host, []).append(result)
    if not by_host:
        return

    def one_host(queue: list[DomainAudit]) -> None:
        for result in queue:
            prove_one(result, prove)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(by_host)) as pool:
        for future in [pool.submit(one_host, queue) for queue in by_host.values()]:
            future.result()
