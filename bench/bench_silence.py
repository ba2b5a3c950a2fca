"""The longest silent stretch of a command: run it, time-stamp every line it prints (stdout and stderr merged,
as a person at a terminal sees them) and report the longest gap between two lines, where it was, and the total.

  python bench/bench_silence.py [--log FILE] [--limit SECONDS] -- CMD ARGS...

Without a command it measures what issue 28 asks for: `wdimage build debian` into a scratch directory and
`wdimage drill` on it (--fault panic). Exit 1 when a gap is longer than --limit (default 10 s).
The command's lines are echoed with the seconds since its start (and written to --log FILE); the report is
the last lines, and with --json a JSON object on stdout.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(cmd: list[str], log=None) -> dict:
    start = time.monotonic()
    last, last_line = start, "(start)"
    longest = {"seconds": 0.0, "after": "", "before": "", "at": 0.0}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Deliberately not wdimage.run: this measures wdimage from the outside, as a terminal would.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    lines = 0
    for raw in proc.stdout:
        now = time.monotonic()
        line = raw.decode(errors="replace").rstrip("\n")
        lines += 1
        gap = now - last
        if gap > longest["seconds"]:
            longest = {"seconds": round(gap, 1), "after": last_line, "before": line, "at": round(last - start, 1)}
        stamped = f"[{now - start:7.1f}s +{gap:5.1f}] {line}"
        print(stamped, flush=True)
        if log:
            log.write(stamped + "\n")
        last, last_line = now, line
    code = proc.wait()
    end = time.monotonic()
    if end - last > longest["seconds"]:
        longest = {"seconds": round(end - last, 1), "after": last_line, "before": "(exit)",
                   "at": round(last - start, 1)}
    return {"command": cmd, "exit": code, "seconds": round(end - start, 1), "lines": lines, "longest_gap": longest}


def default_commands(scratch: Path) -> list[list[str]]:
    wdimage = [sys.executable, "-m", "wdimage"]
    out = scratch / "debian-i6300esb"
    return [wdimage + ["build", "debian", "--output", str(out)],
            wdimage + ["drill", str(out), "--fault", "panic"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=float, default=10.0, help="the longest gap allowed (seconds)")
    parser.add_argument("--log", type=Path, help="also write the time-stamped lines here")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("cmd", nargs="*", help="the command (after --)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-silence-") as scratch:
        commands = [args.cmd] if args.cmd else default_commands(Path(scratch))
        log = args.log.open("w") if args.log else None
        results = [measure(cmd, log) for cmd in commands]
        if log:
            log.close()
    for r in results:
        g = r["longest_gap"]
        print(f"{' '.join(map(str, r['command']))}: exit {r['exit']}, {r['seconds']} s, {r['lines']} lines; "
              f"longest silence {g['seconds']} s at {g['at']} s, after {g['after']!r}, before {g['before']!r}")
    if args.json:
        print(json.dumps(results, indent=2))
    worst = max(r["longest_gap"]["seconds"] for r in results)
    return 1 if worst > args.limit or any(r["exit"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
