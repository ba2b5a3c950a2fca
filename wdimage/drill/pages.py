"""The drill as pages people look at: one self-contained HTML file (`wdimage drill --html`: inline CSS and SVG,
no script, nothing fetched) and Markdown for a CI job's summary (`--markdown`: a table and a Mermaid timeline).

Both are rendered from the JSON report (wdimage.drill.report.report_json), the one description of a drill, so
a report file written earlier renders the same way. The HTML is a template (templates/drill.html.j2) on the frame
every wdimage HTML report shares (report-base.html.j2, report-macros.html.j2); another report is another
template on that frame, rendered by `render_page`.
"""

import datetime
import re

from wdimage import __version__, templating
from wdimage.drill import timeline
from wdimage.image.outputs import MARKDOWN_MARK  # the Markdown form's first line: how a previous one is known

PACKAGES = ("wdimage.drill",)
HTML_KIND = "drill report"  # in the page's generator line (image.outputs.HTML_GENERATOR)


# Terminal escapes (colours, cursor moves) and control characters in a guest's console: shown as the text they
# decorate. CR LF line ends as LF.
TERMINAL_ESCAPE = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-~])")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def console(text: str | None) -> str:
    """A console tail as plain text."""
    return CONTROL.sub("", TERMINAL_ESCAPE.sub("", (text or "").replace("\r\n", "\n")))


def verdict(item: dict) -> str:
    return "skip" if item.get("skipped") else "pass" if item.get("passed") else "fail"


def _seconds(value) -> str:
    return "" if value is None else f"{value:.1f}s"


def _window(window) -> str:
    if not window:
        return ""
    low, high = window
    return f"{high:g}s" if low == high else f"{low:g}-{high:g}s"


def facts(report: dict) -> list[tuple[str, str]]:
    """What was drilled, on what, with which versions: the page's header."""
    where = " ".join(str(report[k]) for k in ("distro", "release") if report.get(k))
    rows = [
        ("target", report.get("target") or report.get("directory") or report.get("name") or ""),
        ("image", where),
        ("watchdog model", report.get("model") or ""),
        ("action", report.get("action") or ""),
        ("timeout", f"{report['timeout']}s (keepalive every {report.get('interval') or 1}s)" if report.get("timeout")
         else ""),
        ("machine", " ".join(filter(None, [report.get("machine"), (report.get("accel") or "").upper()]))),
        ("hypervisor", report.get("hypervisor") or ""),
        ("guest kernel", report.get("kernel") or ""),
        ("boot to armed", f"{report['boot_to_armed_seconds']:.1f}s (guest agent after "
         f"{report.get('boot_to_agent_seconds') or 0:.1f}s)" if report.get("boot_to_armed_seconds") else ""),
        ("started", report.get("started_at") or ""),
        ("wdimage", report.get("wdimage") or ""),
    ]
    return [(name, value) for name, value in rows if value]


def title(report: dict) -> str:
    where = " ".join(str(report[k]) for k in ("distro", "release") if report.get(k))
    return (f"wdimage drill of {report.get('name') or report.get('target')}"
            + (f" ({where}, {report.get('model')}, action {report.get('action')})" if where else
               f" ({report.get('model')}, action {report.get('action')})"))


def render_page(template: str, report: dict, kind: str, packages: tuple[str, ...] = PACKAGES, **values) -> str:
    """A page on the shared frame (the template of the first of `packages` that has it): `report['passed']`
    decides its colour."""
    return templating.render(packages, template, version=__version__, kind=kind,
                             written=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                             verdict="pass" if report.get("passed") else "fail", report=report, **values)


# What a report of any schema gets when it lacks a key the pages read (schema 1 and 2 have no timelines).
DEFAULTS = {"checks": [], "faults": [], "left_out": [], "warnings": [], "error": None, "console_tail": None,
            "faults_requested": []}


def render_html(report: dict) -> str:
    """The drill report (JSON form, any schema wdimage reads) as one HTML page."""
    report = {**DEFAULTS, **{k: v for k, v in report.items() if v is not None}}
    report["console_tail"] = console(report["console_tail"])
    lanes = {lane.name: lane for lane in timeline.lanes(report)}
    scenarios = [{
        "name": f["fault"], "verdict": verdict(f), "outcome": f.get("outcome") or "",
        "detail": f.get("skipped") or f.get("detail") or "", "window": _window(f.get("expected_window")),
        "measured": _seconds(f.get("seconds_to_reset")), "lane": lanes.get(f["fault"]),
        "console": console(f.get("console_tail")),
    } for f in report.get("faults") or []]
    names = [f["fault"] for f in report.get("faults") or []]
    requested = report.get("faults_requested") or []
    return render_page("drill.html.j2", report, HTML_KIND, title=title(report), facts=facts(report),
                       scenarios=scenarios, lanes=list(lanes.values()), boot_lane=lanes.get("boot"),
                       full_width=timeline.WIDTH_PX,
                       not_run=[name for name in requested if name not in names])


# --- Markdown -------------------------------------------------------------------------------------------------

def _cell(text) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    return re.sub(r"\s+", " ", str(text if text is not None else "")).replace("|", "\\|").strip()


def _gantt_name(text: str) -> str:
    """A Mermaid gantt task name: no colon, hash or semicolon (the syntax's own), one line."""
    return re.sub(r"[:#;\n]", " ", text).strip() or "?"


def _clock(seconds: float) -> str:
    """Seconds since the drill started as the chart's HH:mm:ss."""
    whole = max(0, int(round(seconds)))
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def mermaid(report: dict) -> str:
    """A Mermaid gantt chart of the timelines (GitHub renders it in a job summary): a section per scenario,
    the boot to armed and the expected window as bars, the fault, event, reset and armed again as milestones."""
    lanes = timeline.lanes(report)
    if not lanes:
        return ""
    lines = ["```mermaid", "gantt", f"    title {_gantt_name(title(report))}", "    dateFormat HH:mm:ss",
             "    axisFormat %M:%S"]
    for lane in lanes:
        lines.append(f"    section {_gantt_name(lane.name)} ({lane.verdict})")
        at = {m.key: m for m in lane.moments}
        if "boot" in at and "armed" in at:
            lines.append(f"    {_gantt_name(at['armed'].label)} :done, {_clock(at['boot'].at)}, {_clock(at['armed'].at)}")
        for span in lane.spans:
            if span.key in ("window", "quiet"):
                tag = "active" if span.key == "window" else "done"
                lines.append(f"    {_gantt_name(span.label)} :{tag}, {_clock(span.start)}, {_clock(span.end)}")
        for key in ("fault", "event", "reset", "armed_again"):
            if key in at:
                crit = "crit, " if key == "event" and lane.verdict == "fail" or key == "fault" else ""
                m = at[key]
                lines.append(f"    {_gantt_name(m.label)} :{crit}milestone, {_clock(m.at)}, {_clock(m.at)}")
    lines.append("```")
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    """The drill for a CI job's summary: the verdict, the scenarios as a table, the failed checks with their
    fixes, and the Mermaid timeline."""
    report = {**DEFAULTS, **{k: v for k, v in report.items() if v is not None}}
    word = "PASSED" if report.get("passed") else "FAILED"
    lines = [MARKDOWN_MARK, f"### {word}: {_cell(title(report))}", ""]
    lines.append(" · ".join(f"{name} {_cell(value)}" for name, value in facts(report)
                            if name in ("machine", "hypervisor", "guest kernel", "boot to armed", "wdimage")))
    lines += ["", "| scenario | expected | verdict | fault to event | window | back armed | detail |",
              "|---|---|---|---|---|---|---|"]
    for f in report.get("faults") or []:
        lines.append(f"| {_cell(f['fault'])} | {_cell(f.get('outcome'))} | {verdict(f).upper()} | "
                     f"{_seconds(f.get('seconds_to_reset'))} | {_window(f.get('expected_window'))} | "
                     f"{_seconds(f.get('seconds_back_armed'))} | {_cell(f.get('skipped') or f.get('detail'))} |")
    failed = [c for c in report.get("checks") or [] if not c.get("passed")]
    if failed:
        lines += ["", "Failed readiness checks:", ""]
        lines += [f"- **{_cell(c['title'])}**: {_cell(c['seen'])}" + (f"; fix: {_cell(c['fix'])}" if c.get("fix") else "")
                  for c in failed]
    if report.get("error"):
        lines += ["", f"Stopped: {_cell(report['error'])}"]
    tails = [(f["fault"], f["console_tail"]) for f in report.get("faults") or [] if f.get("console_tail")]
    if report.get("console_tail"):
        tails.append(("the drill", report["console_tail"]))
    for name, tail in tails:
        tail = console(tail)
        fence = "~~~~" if "~~~" in tail else "~~~"
        lines += ["", f"<details><summary>The guest's console at the failure of {_cell(name)}</summary>", "",
                  fence, tail, fence, "", "</details>"]
    chart = mermaid(report)
    if chart:
        lines += ["", chart]
    return "\n".join(lines) + "\n"
