"""The drill's pages (wdimage.drill.pages, wdimage.drill.timeline): HTML and Markdown rendered from reports that
the real runner filled in memory, on the scripted guest of test_runner (virtual clock: the moments are exact).

The page is parsed, not grepped: one SVG timeline per scenario, each moment where the scale puts it, nothing the
page would fetch. The browser's view of a real drill's page is tests/real/test_drill.py's."""

import ast
import html.parser
import re
from pathlib import Path

import pytest

import wdimage
from tests.unit.test_runner import Clock, FakeTarget, Script, drill, fired
from wdimage.drill import checks, pages, runner, scenarios, session, timeline, watch
from wdimage.drill import health as health_drill
from wdimage.drill import report as drill_report
from wdimage.image import outputs
from wdimage.vm.guest import EventKind


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    for module in (session, watch, checks, scenarios, health_drill, runner):
        monkeypatch.setattr(module, "time", clock)
    return clock


def panic_then_reset() -> Script:
    return Script(after_fault=fired(12.5, "reset", (12.6, EventKind.RESET, None, "watchdog")))


class Page(html.parser.HTMLParser):
    """The elements of a page: (tag, attributes, the classes), and its text."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict, set]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs, set((attrs.get("class") or "").split())))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, cls: str = "") -> list[dict]:
        return [a for t, a, c in self.elements if t == tag and (not cls or cls in c)]


def moments_of(svg_text: str) -> dict[str, float]:
    """key -> x of each moment's line in one timeline's SVG."""
    found = {}
    for key, x in re.findall(r'<g class="moment (\w+)">.*?<line x1="([\d.]+)"', svg_text, re.S):
        found[key] = float(x)
    return found


def svgs(text: str) -> list[str]:
    return re.findall(r"<svg class=\"timeline\".*?</svg>", text, re.S)


# --- the JSON report's moments ----------------------------------------------------------------------------

def test_a_scenarios_moments_are_recorded_in_order_on_the_drills_clock(clock):
    report = drill(FakeTarget(clock, panic_then_reset()), ["panic", "kill"])
    data = drill_report.report_json(report)
    panic, kill = data["faults"]
    t = panic["timeline"]
    assert data["first_boot"]["boot"] == t["boot"] == 20.0  # the scripted target takes 20 s to start a guest
    assert t["boot"] < t["armed"] < t["fault"] < t["event"] < t["reset"] < t["armed_again"] <= t["end"]
    assert t["event"] - t["fault"] == pytest.approx(panic["seconds_to_reset"])
    assert t["reset"] - t["event"] == pytest.approx(0.1)  # the RESET that followed the WATCHDOG event
    assert t["event_label"] == "watchdog reset" and t["armed_by"] == "the watchdog daemon"
    # the reset guest, armed again, served the next scenario: its boot is the reset
    assert kill["timeline"]["boot"] == pytest.approx(t["reset"] - 0.1) and kill["timeline"]["armed"] == t["armed_again"]
    assert panic["console_tail"] is None and data["faults_requested"] == ["panic", "kill"]
    assert data["started_at"].endswith("+00:00")


def test_a_failed_scenario_keeps_the_console_tail_and_no_event(clock):
    console = "[   12.3] Kernel panic - not syncing: sysrq triggered crash\n---[ end Kernel panic ]---"
    report = drill(FakeTarget(clock, Script(after_fault=fired(40, "reset"), console=console)), ["hang"])
    [hang] = drill_report.report_json(report)["faults"]
    assert hang["passed"] is False and hang["console_tail"] == console
    assert hang["timeline"]["event"] is None and hang["timeline"]["end"] - hang["timeline"]["fault"] >= 25


# --- the HTML page ------------------------------------------------------------------------------------------

def test_one_timeline_per_scenario_each_moment_to_scale(clock):
    report = drill(FakeTarget(clock, panic_then_reset()), ["panic", "kill", "hang"])
    data = drill_report.report_json(report)
    text = pages.render_html(data)
    page = Page(text)
    drawn = page.all("svg", "timeline")
    assert [a["data-scenario"] for a in drawn] == ["panic", "kill", "hang"]
    lanes = {lane.name: lane for lane in timeline.lanes(data)}
    panic = data["faults"][0]
    x = moments_of(svgs(text)[0])
    scale = (x["event"] - x["fault"]) / panic["seconds_to_reset"]  # pixels per second on this lane
    window = next(s for s in lanes["panic"].spans if s.key == "window")
    low, high = panic["expected_window"]
    assert window.x - x["fault"] == pytest.approx(low * scale, abs=0.2)
    assert window.width == pytest.approx((high - low) * scale, abs=0.2)
    # one scale for every lane: the 12.5 s from fault to event are as long on the kill lane
    x_kill = moments_of(svgs(text)[1])
    assert x_kill["event"] - x_kill["fault"] == pytest.approx(x["event"] - x["fault"], abs=0.2)
    assert all(lane.width <= timeline.WIDTH_PX + 1 for lane in lanes.values())
    assert timeline.WIDTH_PX - timeline.BREAK_PX - 1 <= max(lane.width for lane in lanes.values())  # the longest fills it
    assert len({(a["width"], a["viewbox"].split()[2]) for a in drawn}) == 1  # every SVG scales alike


def test_a_controls_lane_shows_its_quiet_watch_and_no_event(clock):
    report = drill(FakeTarget(clock, Script()), ["healthy"])
    data = drill_report.report_json(report)
    [lane] = timeline.lanes(data)
    assert report.passed and lane.verdict == "pass" and lane.outcome == "quiet"
    spans = {s.key: s for s in lane.spans}
    assert set(spans) == {"window", "quiet"} and "event" not in {m.key for m in lane.moments}
    low, high = data["faults"][0]["expected_window"]
    assert spans["quiet"].width == pytest.approx(2 * high / (high - low) * spans["window"].width, abs=0.5)


def test_a_guest_armed_long_before_its_fault_has_the_wait_cut_out():
    """A guest that served earlier scenarios was armed long before this fault: the wait is cut out."""
    def fault(name, boot, armed, at):
        return {"fault": name, "passed": True, "outcome": "fire", "expected_window": [10, 15],
                "timeline": {"boot": boot, "armed": armed, "fault": at, "event": at + 14, "reset": at + 14,
                             "armed_again": at + 22, "end": at + 23}}
    data = {"faults": [fault("panic", 0.0, 8.0, 10.0), fault("kill", 24.0, 32.0, 400.0)]}
    lanes = {lane.name: lane for lane in timeline.lanes(data)}
    assert lanes["panic"].cut is None  # armed just before its fault
    cut = lanes["kill"].cut
    at = {m.key: m for m in lanes["kill"].moments}
    assert cut is not None and at["armed"].x < cut < at["fault"].x
    # both lanes on one scale: the same 14 s from fault to event, and the 368 s wait drawn as a break
    panic_at = {m.key: m for m in lanes["panic"].moments}
    assert at["event"].x - at["fault"].x == pytest.approx(panic_at["event"].x - panic_at["fault"].x, abs=0.2)
    assert lanes["kill"].width < 2 * lanes["panic"].width


def test_the_page_is_self_contained(clock):
    report = drill(FakeTarget(clock, panic_then_reset()), ["panic"])
    text = pages.render_html(drill_report.report_json(report))
    page = Page(text)
    assert not page.all("script") and not page.all("link") and not page.all("img") and not page.all("iframe")
    for tag, attrs, _ in page.elements:
        for name, value in attrs.items():
            if name in ("src", "href", "srcset", "action", "data", "poster"):
                pytest.fail(f"<{tag} {name}={value!r}>: the page would fetch something")
    assert "url(" not in text and "@import" not in text
    assert re.findall(r"https?://[^\s\"'<]+", text) == ["http://www.w3.org/2000/svg"]  # the SVG namespace, a name
    assert text.startswith("<!DOCTYPE html>")


def test_a_failed_drill_is_red_with_the_fix_and_the_console(clock):
    console = "[    3.1] watchdog: watchdog0: watchdog did not stop!\n[   40.2] Kernel panic"
    report = drill(FakeTarget(clock, Script(armed=False, console=console)), ["panic"])
    data = drill_report.report_json(report)
    text = pages.render_html(data)
    page = Page(text)
    assert page.all("div", "banner") and "fail" in (page.all("div", "banner")[0]["class"])
    assert "FAILED" in page.text
    failed = page.all("tr", "fail")
    assert len(failed) == 1  # the holder check
    assert "fix:" in text and checks.FIXES["holder"].split(":")[0] in text
    assert "Not run:" in text and "panic" in text
    assert "watchdog did not stop!" in text and page.all("pre", "console")  # the console where it stopped
    assert [a["data-scenario"] for a in page.all("svg", "timeline")] == ["boot"]  # no scenario: the boot's lane


def test_a_failed_scenario_is_marked_and_carries_its_console(clock):
    console = "[   12.3] Kernel panic - not syncing: <sysrq> & more"
    report = drill(FakeTarget(clock, Script(after_fault=fired(40, "reset"), console=console)), ["hang"])
    text = pages.render_html(drill_report.report_json(report))
    page = Page(text)
    [section] = page.all("section", "scenario")
    assert "fail" in section["class"].split() and section["id"] == "scenario-hang"
    assert "&lt;sysrq&gt; &amp; more" in text and "<sysrq>" not in text  # escaped, not markup


def test_values_from_the_guest_cannot_inject_markup(clock):
    report = drill(FakeTarget(clock, panic_then_reset()), ["panic"])
    report.faults[0].detail = '</title><script>alert(1)</script>'
    report.warnings.append('<img src="http://example.invalid/x">')
    text = pages.render_html(drill_report.report_json(report))
    assert "<script>" not in text and "<img" not in text
    assert not Page(text).all("script") and not Page(text).all("img")


def test_a_report_of_an_older_wdimage_renders_without_timelines():
    old = {"schema": 2, "name": "debian-i6300esb", "model": "i6300esb", "action": "reset", "timeout": 15,
           "checks": [], "passed": True,
           "faults": [{"fault": "panic", "passed": True, "seconds_to_reset": 14.7, "expected_window": [10, 15],
                       "outcome": "fire", "detail": "WATCHDOG reset"}]}
    text = pages.render_html(old)
    assert not Page(text).all("svg", "timeline") and "written by an older wdimage" in text
    assert "PASSED" in text and "14.7s" in text
    assert "| panic | fire | PASS | 14.7s | 10-15s |" in pages.render_markdown(old)


def test_a_previous_page_is_recognised_and_a_foreign_one_not(tmp_path, clock):
    report = drill(FakeTarget(clock, panic_then_reset()), ["panic"])
    ours = tmp_path / "drill.html"
    ours.write_text(pages.render_html(drill_report.report_json(report)))
    assert outputs.is_html_report(ours)
    theirs = tmp_path / "other.html"
    theirs.write_text("<!DOCTYPE html>\n<html><head><meta name=\"generator\" content=\"Hugo\"></head></html>")
    assert not outputs.is_html_report(theirs)


# --- Markdown for a CI job's summary -------------------------------------------------------------------------

GANTT_LINE = re.compile(r"    [^:#;\n]+ :(?:(?:done|active|crit|milestone), )*\d\d:\d\d:\d\d, \d\d:\d\d:\d\d")


def test_markdown_has_a_row_per_scenario_and_a_mermaid_gantt(clock):
    report = drill(FakeTarget(clock, panic_then_reset()), ["healthy", "panic", "kill"])
    report.faults[1].detail = "a | pipe"
    text = pages.render_markdown(drill_report.report_json(report))
    lines = text.splitlines()
    assert lines[0] == outputs.MARKDOWN_MARK
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| scenario")]
    assert [row.split(" | ")[0][2:] for row in rows] == ["healthy", "panic", "kill"]
    assert all(row.count(" | ") == 6 for row in rows)  # the escaped pipe is no column
    assert "a \\| pipe" in text
    chart = text[text.index("```mermaid"):]
    body = chart.splitlines()[1:chart.splitlines().index("```")]
    assert body[0] == "gantt" and "    dateFormat HH:mm:ss" in body
    sections = [line for line in body if line.startswith("    section ")]
    assert sections == ["    section healthy (fail)", "    section panic (pass)", "    section kill (pass)"]
    tasks = [line for line in body[1:] if not line.startswith(("    section", "    title", "    dateFormat",
                                                                "    axisFormat"))]
    assert tasks and all(GANTT_LINE.fullmatch(line) for line in tasks), tasks
    assert any(line.startswith("    watchdog reset :milestone, ") for line in tasks)


def test_markdown_of_a_failed_drill_lists_the_failed_checks_and_the_console(clock):
    report = drill(FakeTarget(clock, Script(armed=False, console="[ 1.0] booted")), ["panic"])
    text = pages.render_markdown(drill_report.report_json(report))
    assert text.splitlines()[1].startswith("### FAILED: wdimage drill of fake")
    assert "- **the daemon holds /dev/watchdog**: no process holds /dev/watchdog; fix: " in text
    assert "<details><summary>The guest's console" in text and "[ 1.0] booted" in text


# --- jinja2 is used from one module -----------------------------------------------------------------------------

def test_jinja2_is_imported_by_templating_alone():
    package = Path(wdimage.__file__).parent
    importers = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name.split(".")[0] == "jinja2" for name in names):
                importers.append(path.relative_to(package).as_posix())
    assert sorted(set(importers)) == ["templating.py"]


def test_console_colours_and_line_ends_are_shown_as_plain_text(clock):
    """systemd's coloured status lines on the serial console, CR LF ended, as the negative control's page
    showed them before: the escapes removed, the words kept."""
    raw = ("[\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mmulti-user.target\x1b[0m - Multi-User System.\r\n"
           "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2)\r\n")
    assert pages.console(raw) == ("[  OK  ] Reached target multi-user.target - Multi-User System.\n"
                                  "SeaBIOS (version 1.16.2)\n")
    report = drill(FakeTarget(clock, Script(armed=False, console=raw)), ["panic"])
    data = drill_report.report_json(report)
    for text in (pages.render_html(data), pages.render_markdown(data)):
        assert "\x1b" not in text and "\r" not in text and "Reached target multi-user.target - Multi" in text
