"""The audit's renderings, all from one AuditReport: a table for people, JSON (jsonfile.AUDIT, documented in
docs/audit.md), JUnit XML (one test case per domain, through wdimage.drill.report.junit_document) and the
Prometheus text exposition format for node_exporter's textfile collector (the one prometheus_client module)."""

import dataclasses
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from wdimage.audit.domain import DomainAudit
from wdimage.audit.fleet import AuditReport
from wdimage.audit.verdicts import VERDICTS, JunitOutcome, Verdict, exit_code, row
from wdimage.drill.report import JunitCase, junit_document
from wdimage.jsonfile import AUDIT

JUNIT_PREFIX = "wdimage audit "


def _version(facts: dict, key: str) -> str | None:
    value = facts.get(key)
    return ".".join(map(str, value)) if value else None


def summary(report: AuditReport) -> dict[str, int]:
    counts = Counter(str(d.verdict) for d in report.domains)
    return {str(v): counts.get(str(v), 0) for v in VERDICTS}


def domain_json(d: DomainAudit) -> dict:
    return {"host": d.host, "domain": d.domain or None, "state": d.state or None, "verdict": str(d.verdict),
            "meaning": row(d.verdict).meaning, "reason": d.reason, "fix": d.shown_fix or None,
            "machine": d.machine or None, "model": d.model, "action": d.action, "devices": d.devices,
            "agent_channel": d.agent_channel, "timeout": d.timeout,
            "checks": [dataclasses.asdict(c) for c in d.checks], "notes": d.notes,
            "seconds": round(d.seconds, 3), "timings": {k: round(v, 3) for k, v in d.timings.items()},
            "history": d.history}


def report_json(report: AuditReport) -> dict:
    return {
        "schema": AUDIT.schema,
        "started": round(report.started, 3),
        "seconds": round(report.seconds, 3),
        "hosts": [{"uri": h.label, "reached": h.reached or None, "error": h.error or None,
                   "hypervisor": h.facts.get("hypervisor"),
                   "hypervisor_version": _version(h.facts, "hypervisor_version"),
                   "libvirt_version": _version(h.facts, "libvirt_version"),
                   "domains": len(h.domains)} for h in report.hosts],
        "domains": [domain_json(d) for d in report.domains],
        "summary": summary(report),
        "exit_code": exit_code(d.verdict for d in report.domains),
    }


def render_text(report: AuditReport) -> str:
    lines = []
    for h in report.hosts:
        versions = (f" ({h.facts.get('hypervisor')} {_version(h.facts, 'hypervisor_version')}, "
                    f"libvirt {_version(h.facts, 'libvirt_version')})"
                    if h.facts else "")
        lines.append(f"Host {h.label}{versions}")
        rows = [d for d in report.domains if d.host == h.label]
        width = max([len(d.domain) for d in rows] + [6])
        for d in rows:
            if not d.domain:
                lines.append(f"  {'ERROR':<{width}}  {d.reason}")
                continue
            device = f"{d.model}/{d.action}" if d.model else "-"
            lines.append(f"  {d.domain:<{width}}  {d.state or '?':<8} {device:<16} {d.verdict:<11} {d.reason}")
            if d.verdict is not Verdict.ARMED and d.shown_fix:
                lines.append(f"  {'':<{width}}  fix: {d.shown_fix}")
            lines += [f"  {'':<{width}}  note: {n}" for n in d.notes]
    counts = ", ".join(f"{n} {v}" for v, n in summary(report).items() if n)
    lines.append(f"{len([d for d in report.domains if d.domain])} domain(s) on {len(report.hosts)} host(s) in "
                 f"{report.seconds:.1f}s: {counts or 'nothing audited'}")
    return "\n".join(lines)


def report_junit(report: AuditReport) -> str:
    suites = []
    for h in report.hosts:
        cases = []
        for d in (d for d in report.domains if d.host == h.label):
            outcome = row(d.verdict).junit
            text = f"{d.verdict}: {d.reason}" + (f"; fix: {d.shown_fix}" if d.shown_fix else "")
            cases.append(JunitCase(
                d.domain or "host", f"wdimage.audit.{h.label}", d.seconds,
                failure=text if outcome is JunitOutcome.FAILURE else None,
                error=text if outcome is JunitOutcome.ERROR else None,
                skipped=text if outcome is JunitOutcome.SKIPPED else None,
                out="\n".join([f"{d.verdict}: {d.reason}", *d.notes])))
        suites.append((f"{JUNIT_PREFIX}{h.label}", cases))
    return junit_document(suites)


def is_audit_junit(path: Path) -> bool:
    """A previous `wdimage audit --junit` file (replaceable without --force)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return False
    suites = [root] if root.tag == "testsuite" else list(root) if root.tag == "testsuites" else []
    return all(s.get("name", "").startswith(JUNIT_PREFIX) for s in suites)


def is_audit_textfile(path: Path) -> bool:
    """A previous `wdimage audit --prometheus` file: every metric family is wdimage's."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")]
    return all(n.startswith("wdimage_") for n in names)


def report_prometheus(report: AuditReport) -> str:
    """The text exposition format: per domain wdimage_watchdog_armed{host,domain,model,action} 0/1, the verdict
    as a state set, the device's timeout and the audit's seconds; per host whether it answered; the audit's time."""
    from prometheus_client import CollectorRegistry, Enum, Gauge, generate_latest

    registry = CollectorRegistry()
    armed = Gauge("wdimage_watchdog_armed", "1 when the guest feeds a watchdog device that the host acts on "
                  "(verdict armed)", ["host", "domain", "model", "action"], registry=registry)
    verdict = Enum("wdimage_watchdog_verdict", "the audit's verdict for the domain (wdimage audit --help)",
                   ["host", "domain"], states=[str(v) for v in VERDICTS], registry=registry)
    timeout = Gauge("wdimage_watchdog_timeout_seconds", "the watchdog device's timeout in the guest (sysfs)",
                    ["host", "domain"], registry=registry)
    seconds = Gauge("wdimage_audit_domain_seconds", "how long the domain's audit took", ["host", "domain"],
                    registry=registry)
    host_up = Gauge("wdimage_audit_host_up", "1 when the libvirt host answered the audit", ["host"],
                    registry=registry)
    when = Gauge("wdimage_audit_timestamp_seconds", "when the audit started (Unix time)", registry=registry)
    for h in report.hosts:
        host_up.labels(h.label).set(0 if h.error else 1)
    for d in report.domains:
        if not d.domain:
            continue
        armed.labels(d.host, d.domain, d.model or "", d.action or "").set(row(d.verdict).armed_value)
        verdict.labels(d.host, d.domain).state(str(d.verdict))
        seconds.labels(d.host, d.domain).set(round(d.seconds, 3))
        if d.timeout is not None:
            timeout.labels(d.host, d.domain).set(d.timeout)
    when.set(round(report.started, 3))
    return generate_latest(registry).decode()
