"""The drill's timelines as geometry: one lane per scenario, every moment placed to one scale, for the HTML
report's SVG and the Markdown report's Mermaid chart (wdimage.drill.pages). No drawing here, only where.

A lane runs from the boot (or reset) of the guest that served its scenario to the end of the scenario's watch.
A guest that served earlier scenarios was booted long before this fault: the stretch between its arming and a
few seconds before the fault is cut out of the lane (drawn as a break), so that every lane keeps one scale.
"""

import dataclasses

from wdimage.drill.scenarios import MARGIN_SECONDS, Outcome

LEAD_SECONDS = 5.0  # drawn before the fault when the stretch since the guest was armed is cut out
CUT_OVER_SECONDS = 20.0  # a quiet stretch longer than this between armed and the fault is cut out
BREAK_PX = 18  # the width of a cut
WIDTH_PX = 860  # the longest lane's drawn width
LABEL_PX = 7  # a label's width per character (the report's sans-serif at 11px), to keep labels apart

# The moments of a lane, in drawing order: (key in watch.Marks, the label's words).
MOMENTS = (
    ("boot", "boot"),
    ("armed", "armed"),
    ("fault", "fault"),
    ("event", ""),  # the event's own name: WATCHDOG reset, RESET guest-reset
    ("reset", "reset"),
    ("armed_again", "armed again"),
)

# Who armed the device first, in words.
ARMERS = {"initramfs": "by the initramfs", "wdimage-keepalive": "by wdimage-keepalive"}


@dataclasses.dataclass(frozen=True)
class Moment:
    key: str  # boot, armed, fault, event, reset, armed_again
    label: str
    at: float  # seconds since the drill started
    since_fault: float | None  # seconds after the fault (negative before it)
    x: float = 0.0  # drawn at, in pixels from the lane's left edge
    row: int = 0  # the label's row (labels of close moments are stacked)

    @property
    def text(self) -> str:
        """The label as drawn: with its seconds from the fault."""
        if self.since_fault is None or self.key == "fault":
            return self.label
        return f"{self.label} {self.since_fault:+.1f}s"


@dataclasses.dataclass(frozen=True)
class Span:
    """A stretch of the lane: the expected window, its margin, the control's quiet watch."""

    key: str  # window, margin, quiet
    label: str
    start: float
    end: float
    x: float = 0.0
    width: float = 0.0
    row: int = 0  # the label's row under the axis


@dataclasses.dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclasses.dataclass(frozen=True)
class Lane:
    name: str  # the scenario (or "boot" when no scenario ran)
    verdict: str  # pass, fail, skip
    outcome: str  # fire, reboot, quiet
    detail: str
    moments: tuple[Moment, ...]
    spans: tuple[Span, ...]
    ticks: tuple[Tick, ...]
    cut: float | None  # x of the break, if a stretch was cut out
    width: float
    rows: int  # label rows used


def _armed_label(by: str, again: bool = False) -> str:
    words = "armed again" if again else "armed"
    return f"{words} {ARMERS.get(by, 'by ' + by) if by else ''}".strip()


def _moments(marks: dict, origin: float) -> list[tuple[str, str, float]]:
    """(key, label, seconds since the drill started) for the moments that happened."""
    found = []
    for key, words in MOMENTS:
        at = marks.get(key)
        if at is None:
            continue
        if key == "armed":
            words = _armed_label(marks.get("armed_by") or "")
        elif key == "armed_again":
            words = _armed_label(marks.get("armed_again_by") or "", again=True)
        elif key == "event":
            words = marks.get("event_label") or "event"
        found.append((key, words, at - origin))
    return found


class Scale:
    """Seconds to pixels, with at most one stretch cut out."""

    def __init__(self, start: float, end: float, cut: tuple[float, float] | None, px_per_second: float):
        self.start, self.end, self.cut, self.k = start, end, cut, px_per_second

    def x(self, at: float) -> float:
        if self.cut is None or at <= self.cut[0]:
            return (at - self.start) * self.k
        if at < self.cut[1]:
            return (self.cut[0] - self.start) * self.k + BREAK_PX / 2
        return (self.cut[0] - self.start) * self.k + BREAK_PX + (at - self.cut[1]) * self.k

    def seconds(self) -> float:
        """The drawn seconds (the cut left out)."""
        return self.end - self.start - (self.cut[1] - self.cut[0] if self.cut else 0)


def _extent(moments: list[tuple[str, str, float]], spans: list[tuple[str, str, float, float]],
            end: float | None) -> tuple[float, float, tuple[float, float] | None]:
    times = [m[2] for m in moments] + [s[3] for s in spans] + ([end] if end is not None else [])
    start, stop = min(times), max(times)
    armed = next((m[2] for m in moments if m[0] == "armed"), None)
    fault = next((m[2] for m in moments if m[0] == "fault"), None)
    cut = None
    if armed is not None and fault is not None and fault - armed > CUT_OVER_SECONDS:
        cut = (armed + LEAD_SECONDS / 2, fault - LEAD_SECONDS)
    return start, max(stop, start + 1.0), cut


def _spans(fault: float | None, window: list | None, outcome: str) -> list[tuple[str, str, float, float]]:
    if fault is None or not window:
        return []
    low, high = window
    if outcome == Outcome.QUIET:
        return [("window", f"would fire {low:g}-{high:g}s", fault + low, fault + high),
                ("quiet", f"nothing may happen for {2 * high:g}s", fault, fault + 2 * high)]
    return [("window", f"expected {low:g}-{high:g}s" if low != high else f"expected {high:g}s",
             fault + low, fault + high),
            ("margin", f"margin {MARGIN_SECONDS}s", fault + high, fault + high + MARGIN_SECONDS)]


TICK_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300)  # seconds between ticks: the first at least TICK_PX apart
TICK_PX = 40


def _ticks(scale: Scale, fault: float | None) -> list[Tick]:
    """Ticks counted from the fault (or from the lane's start when there was none), as far apart as every
    lane's (one scale, one step), none crowding the break."""
    zero = fault if fault is not None else scale.start
    step = next((s for s in TICK_STEPS if s * scale.k >= TICK_PX), TICK_STEPS[-1])
    cut_x = scale.x(scale.cut[0]) + BREAK_PX / 2 if scale.cut else None
    ticks, n = [], int((scale.start - zero) // step)
    while zero + n * step <= scale.end:
        at = zero + n * step
        inside = at >= scale.start and not (scale.cut and scale.cut[0] < at < scale.cut[1])
        if inside and cut_x is not None and abs(scale.x(at) - cut_x) < TICK_PX / 2:
            inside = False
        if inside:
            ticks.append(Tick(round(scale.x(at), 1), f"{n * step:+d}s" if n else "0s"))
        n += 1
    return ticks


def _rows(moments: list[Moment]) -> list[Moment]:
    """Each label on the first row where it does not run into the previous one."""
    ends: list[float] = []
    placed = []
    for m in sorted(moments, key=lambda m: m.x):
        width = LABEL_PX * len(m.text) + 8
        row = next((i for i, end in enumerate(ends) if end < m.x), len(ends))
        if row == len(ends):
            ends.append(0.0)
        ends[row] = m.x + width
        placed.append(dataclasses.replace(m, row=row))
    return placed


def lanes(report: dict) -> list[Lane]:
    """One lane per scenario of a JSON drill report (wdimage.drill.report.report_json), all to one scale; a
    report without scenarios (the checks failed) gets one lane for its boot. Old reports (schema 1 and 2) have
    no timelines: no lanes."""
    rows = []
    for fault in report.get("faults") or []:
        marks = fault.get("timeline")
        if not marks:
            continue
        verdict = "skip" if fault.get("skipped") else "pass" if fault.get("passed") else "fail"
        rows.append((fault["fault"], verdict, fault.get("outcome") or "", fault.get("skipped") or fault.get("detail")
                     or "", marks, fault.get("expected_window")))
    if not rows and report.get("first_boot"):
        rows.append(("boot", "pass" if report.get("passed") else "fail", "", report.get("error") or
                     "the readiness checks", report["first_boot"], None))
    drafts = []
    for name, verdict, outcome, detail, marks, window in rows:
        moments = _moments(marks, 0.0)
        if not moments:
            continue
        spans = _spans(marks.get("fault"), window, outcome)
        start, end, cut = _extent(moments, spans, marks.get("end"))
        drafts.append((name, verdict, outcome, detail, moments, spans, start, end, cut, marks.get("fault")))
    if not drafts:
        return []
    longest = max((end - start - (cut[1] - cut[0] if cut else 0)) for _, _, _, _, _, _, start, end, cut, _ in drafts)
    k = (WIDTH_PX - BREAK_PX) / max(longest, 1.0)
    result = []
    for name, verdict, outcome, detail, moments, spans, start, end, cut, fault in drafts:
        scale = Scale(start, end, cut, k)
        placed = _rows([Moment(key, label, at, None if fault is None else round(at - fault, 2),
                               round(scale.x(at), 1)) for key, label, at in moments])
        drawn = [Span(key, label, s, e, round(scale.x(s), 1), round(max(scale.x(e) - scale.x(s), 1.0), 1), row)
                 for row, (key, label, s, e) in enumerate(spans)]
        result.append(Lane(name, verdict, outcome, detail, tuple(placed), tuple(drawn), tuple(_ticks(scale, fault)),
                           round(scale.x(cut[0]), 1) if cut else None, round(scale.x(end), 1),
                           1 + max((m.row for m in placed), default=0)))
    return result
