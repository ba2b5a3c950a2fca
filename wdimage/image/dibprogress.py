"""diskimage-builder's progress, read from its log as it grows: each phase (root.d, install.d, ...) as a nested
step with its time, the scripts that took a while, and, when the log is quiet, what is still running. With
`--logfile`, DIB itself prints next to nothing for minutes; this keeps a person informed (issue 28: no silent
stretch over 10 s).

`DibProgress.feed` turns one log line into the messages to show (pure: the times are the log's own stamps);
`follow` runs it in a thread over the growing file, with a heartbeat.
"""

import contextlib
import dataclasses
import datetime
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from wdimage import log

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \| (.*)$")
_RUNNING = re.compile(r"dib-run-parts Running \S*/(?P<phase>[\w-]+\.d)/(?P<script>[^/\s]+)$")
_COMPLETED = re.compile(r"dib-run-parts (?P<script>\S+) completed$")
_TARGET = re.compile(r"dib-run-parts Target: (?P<phase>[\w-]+\.d)$")
# Steps outside the phases' scripts, as DIB words them: (the line's start, what to show).
MILESTONES: tuple[tuple[str, str], ...] = (
    ("Building elements:", "expanding the elements"),
    ("Calculating image size", "block device: sizing, file systems, copying the tree in"),
    ("Converting image using qemu-img convert", "converting the image (qemu-img convert)"),
    ("Build completed successfully", "diskimage-builder finished"),
)
SLOW_SCRIPT = 1.0  # a script that took longer is shown with its time


def _time(stamp: str) -> float:
    return datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


@dataclasses.dataclass
class DibProgress:
    phase: str | None = None
    phase_start: float = 0.0
    script: str | None = None
    script_start: float = 0.0
    doing: str = "starting"  # what runs now, for the heartbeat
    milestones_seen: set = dataclasses.field(default_factory=set)

    def feed(self, line: str) -> list[str]:
        m = _STAMP.match(line.rstrip("\n"))
        if not m:
            return []
        at, text = _time(m[1]), m[2].strip()
        if r := _RUNNING.search(text):
            out = []
            if r["phase"] != self.phase:
                out += self._end_phase(at)
                self.phase, self.phase_start = r["phase"], at
                out.append(f"‣ {self.phase}")
            self.script, self.script_start = r["script"], at
            self.doing = f"{self.phase}: {self.script}"
            return out
        if c := _COMPLETED.search(text):
            took = at - self.script_start
            self.doing = f"{self.phase}: after {c['script']}"
            if c["script"] == self.script and took >= SLOW_SCRIPT:
                return [f"    {c['script']}: {took:.1f}s"]
            return []
        if t := _TARGET.search(text):
            return self._end_phase(at) if t["phase"] == self.phase else []
        for start, shown in MILESTONES:
            if text.startswith(start) and start not in self.milestones_seen:
                self.milestones_seen.add(start)
                out = self._end_phase(at)
                self.doing = shown
                return out + [f"‣ {shown}"]
        return []

    def _end_phase(self, at: float) -> list[str]:
        if self.phase is None:
            return []
        phase, self.phase = self.phase, None
        return [f"  {phase} done in {at - self.phase_start:.1f}s"]


@contextlib.contextmanager
def follow(logfile: Path, say: Callable[[str], None] = log.info, heartbeat: float = log.HEARTBEAT,
           poll: float = 0.5) -> Iterator[DibProgress]:
    """While the block runs, read `logfile` as DIB appends to it and `say` the progress; when nothing was said
    for `heartbeat` seconds, say what is still running and for how long."""
    progress = DibProgress()
    done = threading.Event()

    def run() -> None:
        last_said = since = time.monotonic()
        pending = ""
        handle = None
        try:
            while True:
                finished = done.is_set()
                if handle is None and logfile.exists():
                    handle = logfile.open(errors="replace")
                chunk = handle.read() if handle else ""
                pending += chunk
                *lines, pending = pending.split("\n")
                for line in lines:
                    for message in progress.feed(line):
                        say(message)
                        last_said = time.monotonic()
                if finished:
                    return
                now = time.monotonic()
                if now - last_said >= heartbeat:
                    say(f"  … {progress.doing} ({now - since:.0f}s into diskimage-builder)")
                    last_said = now
                done.wait(poll)
        finally:
            if handle:
                handle.close()

    thread = threading.Thread(target=run, name="dib-progress", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        done.set()
        thread.join()
