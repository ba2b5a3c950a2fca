"""Drill timings: boot-to-armed seconds and, per fault, reset seconds / configured timeout.

    .venv/bin/python bench/bench_drill.py [DIR] [--fault panic|kill|hang|all]

DIR defaults to output/debian-i6300esb (what `make demo` builds). Aims (issue 4): boot-to-armed under 20 s
under TCG; reset seconds / timeout within 1.1. Prints figures, asserts nothing.
"""

import argparse
import sys
import time
from pathlib import Path

from wdimage import drill, log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", nargs="?", type=Path, default=Path("output/debian-i6300esb"))
    parser.add_argument("--fault", choices=drill.FAULT_CHOICES, default="all")
    args = parser.parse_args()
    if not (args.directory / "manifest.json").is_file():
        print(f"bench_drill: skipped: no build output in {args.directory} (run 'wdimage build debian' first)")
        return 0
    log.quiet = True
    build = drill.load_build(args.directory)
    start = time.monotonic()
    report = drill.run_drill(build, drill.faults_for(args.fault))
    wall = time.monotonic() - start
    print(f"drill {args.directory}: {report.accel} ({report.accel_reason}); model {build.model}, "
          f"timeout {build.timeout}s; wall {wall:.0f}s")
    armed = report.boot_to_armed_seconds
    print(f"  boot to agent        {_s(report.boot_to_agent_seconds)}")
    print(f"  boot to armed        {_s(armed)}   aim < 20 s under TCG: {_aim(armed is not None and armed < 20)}")
    for f in report.faults:
        ratio = f.seconds_to_reset / build.timeout if f.seconds_to_reset else None
        ratio_text = f"{ratio:.3f}" if ratio else "-"
        print(f"  {f.fault:<6} reset {_s(f.seconds_to_reset)}  / timeout = {ratio_text:>5}   aim <= 1.1: "
              f"{_aim(ratio is not None and ratio <= 1.1)}   back armed {_s(f.seconds_back_armed)}"
              f"   {'PASS' if f.passed else 'FAIL'}")
    print(f"  result: {'PASSED' if report.passed else 'FAILED'}"
          f"{'' if report.passed else f' (details: wdimage drill {args.directory})'}")
    return 0  # figures, not a verdict: the drill's own tests judge


def _s(value: float | None) -> str:
    return f"{value:6.1f} s" if value is not None else "     - s"


def _aim(met: bool) -> str:
    return "met" if met else "MISSED"


if __name__ == "__main__":
    sys.exit(main())
