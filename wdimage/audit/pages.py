"""`wdimage audit --html`: the fleet as one self-contained page (inline CSS, no script, nothing fetched), a table
per host with a row per domain, the verdict in its colour and the fix where it is not armed.

Rendered from the JSON form of the audit (wdimage.audit.outputs.report_json), the one description every output
shares, on the frame of every wdimage HTML report (wdimage/drill/templates/report-base.html.j2).
"""

from wdimage.audit.verdicts import JunitOutcome, row
from wdimage.drill import pages as drill_pages

PACKAGES = ("wdimage.audit", "wdimage.drill")  # the audit's template, on the drill's frame
HTML_KIND = "audit report"

# A verdict's colour is its JUnit outcome's: what passes is green, what is skipped grey, the rest red.
COLOURS = {JunitOutcome.PASSED: "pass", JunitOutcome.SKIPPED: "skip", JunitOutcome.FAILURE: "fail",
           JunitOutcome.ERROR: "fail"}


def colour(verdict: str) -> str:
    return COLOURS[row(verdict).junit]


def title(report: dict) -> str:
    domains = [d for d in report["domains"] if d.get("domain")]
    return f"wdimage audit of {len(domains)} domain(s) on {len(report['hosts'])} host(s)"


def facts(report: dict) -> list[tuple[str, str]]:
    counts = ", ".join(f"{n} {v}" for v, n in report["summary"].items() if n)
    return [(name, value) for name, value in [
        ("verdicts", counts or "nothing audited"),
        ("took", f"{report['seconds']:.1f}s"),
    ] if value]


def _device(d: dict) -> str:
    return f"{d['model']}/{d['action']}" if d.get("model") else "-"


def hosts(report: dict) -> list[dict]:
    """Per host: its line (versions or the error) and its domains, the worst verdict first."""
    out = []
    for h in report["hosts"]:
        versions = ", ".join(filter(None, [
            f"{h['hypervisor']} {h['hypervisor_version']}" if h.get("hypervisor") else "",
            f"libvirt {h['libvirt_version']}" if h.get("libvirt_version") else ""]))
        rows = [{**d, "device": _device(d), "colour": colour(d["verdict"])}
                for d in report["domains"] if d["host"] == h["uri"]]
        for d in rows:  # a verdict that passes (armed, proven) needs no fix
            d["fix"] = d["fix"] if d["colour"] != "pass" else None
        rows.sort(key=lambda d: -row(d["verdict"]).severity)
        out.append({"uri": h["uri"], "versions": versions, "error": h.get("error"), "domains": rows})
    return out


def render_html(report: dict) -> str:
    """The audit report (JSON form) as one HTML page."""
    page = {**report, "passed": report.get("exit_code") == 0}
    return drill_pages.render_page("audit.html.j2", page, HTML_KIND, packages=PACKAGES, title=title(report),
                                   facts=facts(report), hosts=hosts(report))
