"""audit --prove (wdimage.audit.prove): which domains get the proof, one per host at a time, and what each
proof's outcome makes of the verdict, in every output. The proof itself (drill --safe on a real libvirt
domain) is proven for real in tests/real/test_safe_proof.py; here it is the drill's own report, scripted."""

import json
import threading
import time

from wdimage.audit import outputs
from wdimage.audit.domain import DomainAudit
from wdimage.audit.fleet import AuditReport, HostReport
from wdimage.audit.prove import prove_armed
from wdimage.audit.verdicts import Verdict, exit_code
from wdimage.drill.watch import FaultResult
from wdimage.errors import failure


class Drill:
    def __init__(self, passed: bool, proof: FaultResult | None):
        self.passed, self.faults = passed, [proof] if proof else []


def _fleet():
    return [DomainAudit("qemu:///a", "web1").decide(Verdict.ARMED, "fed"),
            DomainAudit("qemu:///a", "web2").decide(Verdict.ARMED, "fed"),
            DomainAudit("qemu:///b", "db1").decide(Verdict.ARMED, "fed"),
            DomainAudit("qemu:///b", "old").decide(Verdict.NOT_ARMED, "no daemon")]


def test_only_armed_domains_are_proven_one_per_host_at_a_time():
    running, overlap, seen, lock = {}, [], [], threading.Lock()

    def prove(domain, uri):
        with lock:
            seen.append((uri, domain))
            running[uri] = running.get(uri, 0) + 1
            overlap.append(running[uri])
        time.sleep(0.05)
        with lock:
            running[uri] -= 1
        return Drill(True, FaultResult("proof", True, action="none", seconds_to_reset=12.5))

    domains = _fleet()
    prove_armed(domains, prove)
    assert sorted(seen) == [("qemu:///a", "web1"), ("qemu:///a", "web2"), ("qemu:///b", "db1")]
    assert max(overlap) == 1  # never two proofs on one host at once
    assert [d.verdict for d in domains] == [Verdict.PROVEN] * 3 + [Verdict.NOT_ARMED]
    assert "12.5s" in domains[0].reason and domains[0].history == [{"verdict": "armed", "reason": "fed"}]
    assert exit_code(d.verdict for d in domains[:3]) == 0


def test_a_failed_skipped_or_impossible_proof_is_proof_failed_with_its_reason():
    outcomes = {"web1": Drill(False, FaultResult("proof", False, detail="no WATCHDOG event within 25s")),
                "web2": Drill(False, FaultResult("proof", False, skipped="cannot set the action")),
                "db1": failure("libvirt domain db1: not running")}

    def prove(domain, uri):
        if isinstance(outcomes[domain], Exception):
            raise outcomes[domain]
        return outcomes[domain]

    domains = _fleet()
    prove_armed(domains, prove)
    assert [d.verdict for d in domains[:3]] == [Verdict.PROOF_FAILED] * 3
    assert "no WATCHDOG event within 25s" in domains[0].reason
    assert "cannot set the action" in domains[1].reason
    assert "not running" in domains[2].reason
    assert "--safe" in domains[0].shown_fix and "qemu:///a" in domains[0].shown_fix
    assert exit_code(d.verdict for d in domains) == 1


def test_proven_and_proof_failed_reach_every_output():
    domains = _fleet()
    prove_armed(domains[:1], lambda d, u: Drill(True, FaultResult("proof", True, seconds_to_reset=11.0)))
    prove_armed(domains[1:2], lambda d, u: Drill(False, FaultResult("proof", False, detail="did not fire")))
    hosts = [HostReport("qemu:///a", domains=["web1", "web2"]), HostReport("qemu:///b", domains=["db1", "old"])]
    report = AuditReport(hosts=hosts, domains=domains, started=time.time())
    text = outputs.render_text(report)
    assert "1 proven, 1 proof-failed" in text and "did not fire" in text
    document = outputs.report_json(report)
    assert {d["verdict"] for d in document["domains"]} >= {"proven", "proof-failed"}
    json.dumps(document)
    junit = outputs.report_junit(report)
    assert 'tests="4"' in junit and 'failures="2"' in junit  # proof-failed and not-armed fail; proven passes
    prom = outputs.report_prometheus(report)
    assert 'wdimage_watchdog_armed{action="",domain="web1",host="qemu:///a",model=""} 1.0' in prom
    assert 'wdimage_watchdog_armed{action="",domain="web2",host="qemu:///a",model=""} 0.0' in prom
    assert 'domain="web1",host="qemu:///a",wdimage_watchdog_verdict="proven"} 1.0' in prom
