"""The fleet: every host's connection and every domain's audit run concurrently (at most `jobs` at a time),
each with its own deadline. A host that cannot be reached is one error line; a hung agent or a dead host is
given up at its deadline and never holds up the others (its thread is a daemon thread left behind: the audit
only reads, so there is nothing of it to undo)."""

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

from wdimage import log
from wdimage.audit.domain import PROBE_SCRIPTS, DomainAudit, audit_domain, error_result
from wdimage.errors import usage_error

DEFAULT_JOBS = 8  # network- and guest-bound: a TCG guest answers its probe in about a second
DEFAULT_DEADLINE = 60.0  # seconds per host connection and per domain


@dataclasses.dataclass
class HostReport:
    uri: str  # as given ("" for libvirt's default)
    reached: str = ""  # the URI libvirt reports for the open connection
    facts: dict = dataclasses.field(default_factory=dict)
    error: str = ""
    domains: list[str] = dataclasses.field(default_factory=list)
    view: object = None  # the ReadOnlyHost while the audit runs

    @property
    def label(self) -> str:
        return self.uri or self.reached or "(default)"


@dataclasses.dataclass
class AuditReport:
    hosts: list[HostReport]
    domains: list[DomainAudit]
    started: float  # time.time()
    seconds: float = 0.0


def run_bounded(tasks: Sequence[Callable[[], object]], jobs: int, deadline: float,
                on_timeout: Callable[[int, float], object], on_error: Callable[[int, BaseException], object],
                on_done: Callable[[int, object], None] = lambda i, result: None) -> list:
    """Each task on a daemon thread, at most `jobs` at once; a task past its `deadline` (from when it started)
    gets on_timeout's result and frees its slot at once; an exception gets on_error's. `on_done` hears of each
    result as it lands (the progress bar)."""
    results: list = [None] * len(tasks)
    done = [False] * len(tasks)
    cond = threading.Condition()
    pending = deque(range(len(tasks)))
    running: dict[int, float] = {}

    def work(i: int) -> None:
        try:
            result = tasks[i]()
        except Exception as e:  # noqa: BLE001 - every failure becomes that domain's error line
            result = on_error(i, e)
        with cond:
            if not done[i]:
                results[i], done[i] = result, True
                running.pop(i, None)
                on_done(i, result)
            cond.notify_all()

    with cond:
        while pending or running:
            while pending and len(running) < jobs:
                i = pending.popleft()
                running[i] = time.monotonic()
                threading.Thread(target=work, args=(i,), name=f"audit-{i}", daemon=True).start()
            now = time.monotonic()
            for i, began in list(running.items()):
                if now - began >= deadline:
                    results[i], done[i] = on_timeout(i, now - began), True
                    del running[i]
                    on_done(i, results[i])
            if running:
                cond.wait(max(0.01, min(began + deadline for began in running.values()) - now))
    return results


def _open_host(uri: str) -> HostReport:
    from wdimage.vm.libvirt_guest import ReadOnlyHost  # libvirt-python is an optional extra

    report = HostReport(uri)
    view = ReadOnlyHost(uri or None, PROBE_SCRIPTS)
    report.view, report.reached = view, view.uri
    report.facts = view.facts()
    report.domains = view.domain_names()
    return report


def audit_fleet(uris: Sequence[str], names: Sequence[str], jobs: int = DEFAULT_JOBS,
                deadline: float = DEFAULT_DEADLINE) -> AuditReport:
    """Audit `names` (every domain when empty) on every host of `uris` ("" for libvirt's default)."""
    started_wall, started = time.time(), time.monotonic()
    with log.step(f"Connecting to {len(uris)} libvirt host(s)"):
        hosts = run_bounded([lambda u=u: _open_host(u) for u in uris], jobs, deadline,
                            lambda i, s: HostReport(uris[i], error=f"no answer within {s:.0f}s"),
                            lambda i, e: HostReport(uris[i], error=_cause(e)))
    reachable = [h for h in hosts if not h.error]
    missing = [n for n in names if reachable and not any(n in h.domains for h in reachable)]
    if missing:
        _close(hosts)
        raise usage_error(f"DOMAIN {missing[0]!r}: no such domain on {', '.join(h.label for h in reachable)}",
                          hint="`virsh -c URI list --all` names the domains of a host")
    work = [(h, n) for h in reachable for n in (names or h.domains) if n in h.domains]
    with log.step(f"Auditing {len(work)} domain(s), {min(jobs, max(1, len(work)))} at a time"), \
            log.progress(len(work), "domains") as bar:
        def one(h: HostReport, n: str) -> DomainAudit:
            facts = h.facts
            return audit_domain(h.label, h.view, n, facts["hypervisor_version"], facts["libvirt_version"], deadline)

        domains = run_bounded(
            [lambda h=h, n=n: one(h, n) for h, n in work], jobs, deadline,
            lambda i, s: error_result(work[i][0].label, work[i][1], f"no answer within {s:.0f}s (deadline "
                                      f"{deadline:.0f}s): a hung guest agent or host", s),
            lambda i, e: error_result(work[i][0].label, work[i][1], _cause(e)),
            on_done=lambda i, result: bar.advance(f"{work[i][1]} {result.verdict}"))
    _close(hosts)
    for h in hosts:
        if h.error:
            domains.append(error_result(h.label, "", f"host unreachable: {h.error}"))
    return AuditReport(hosts, domains, started_wall, time.monotonic() - started)


def _cause(e: BaseException) -> str:
    return str(e) or type(e).__name__


def _close(hosts: list[HostReport]) -> None:
    for h in hosts:
        if h.view is not None:
            h.view.close()
            h.view = None
