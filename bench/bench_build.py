"""Benchmark `wdimage build debian`: cold build, warm rebuild, overhead against plain disk-image-create with
the same elements and environment in the same run, and the qcow2 size.

    .venv/bin/python bench/bench_build.py [--repeat N] [--bare]

Cold: an empty DIB image cache (no debootstrap tarball, no apt packages). Warm: the same cache again.
Plain: the very DibCommand wdimage runs, run directly, warm too, so the ratio is wdimage's own work
(validation, rendering, kernel check, checksums, SBOM, publishing). --bare also builds a bare
debian-minimal + baremetal image (no watchdog elements, no slimming) for the size comparison.
Warm and plain runs alternate N times (default 2) and the best of each counts.
Prints figures and ratios; asserts nothing about time (the machine is shared and noisy).
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wdimage import log  # noqa: E402
from wdimage.image import build, dib

MB = 1_000_000


def timed(label: str, fn) -> float:
    start = time.monotonic()
    fn()
    seconds = time.monotonic() - start
    print(f"{label:<44} {seconds:7.1f} s", flush=True)
    return seconds


def wdimage_build(output: Path) -> None:
    subprocess.run([sys.executable, "-m", "wdimage", "-q", "build", "debian", "--output", str(output)], check=True,
                   stdout=subprocess.DEVNULL)


def plain_dib(work: Path, elements: tuple[str, ...] | None = None) -> Path:
    settings = build.make_settings("debian", output=work / "unused")
    layout = dib.choose_layout()
    inputs = build.write_inputs(settings, layout)
    command = build.dib_command(settings, layout, inputs, work / "plain" / "debian", logfile=work / "plain.log")
    if elements:
        command = dib.DibCommand(env=command.env, elements=elements, output=command.output,
                                 logfile=work / "bare.log")
    (work / "plain").mkdir(exist_ok=True)
    command.run()
    return work / "plain" / "debian.qcow2"


def main() -> int:
    log.quiet = True
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 2
    with tempfile.TemporaryDirectory(prefix="wdimage-bench-", dir=os.environ.get("WDIMAGE_BENCH_DIR")) as tmp:
        work = Path(tmp)
        os.environ["DIB_IMAGE_CACHE"] = str(work / "dib-cache")  # cold: nothing cached yet
        cold = timed("wdimage build debian, cold cache", lambda: wdimage_build(work / "cold"))
        warms, plains = [], []
        for _ in range(repeat):  # alternate, keep the best of each: the machine is shared
            warms.append(timed("wdimage build debian, warm cache", lambda: wdimage_build(work / "warm")))
            plains.append(timed("plain disk-image-create, same elements, warm", lambda: plain_dib(work)))
        warm, plain = min(warms), min(plains)
        image = work / "warm" / "debian-i6300esb.qcow2"
        size = image.stat().st_size
        print(f"{'warm/cold':<44} {warm / cold:7.2f}   (aim: <= 0.50)")
        print(f"{'wdimage overhead over plain DIB (warm)':<44} {(warm / plain - 1) * 100:+6.1f} %  (aim: <= 5 %)")
        print(f"{'qcow2 size':<44} {size / MB:7.1f} MB  (aim: < 200 MB; bare debian-minimal: 313 MB)")
        for name in ("debian-i6300esb.vmlinuz", "debian-i6300esb.initrd"):
            print(f"{name:<44} {(work / 'warm' / name).stat().st_size / MB:7.1f} MB")
        if "--bare" in sys.argv:
            bare = plain_dib(work, elements=("debian-minimal", *dib.layout_elements(dib.choose_layout())))
            print(f"{'bare debian-minimal qcow2 size':<44} {bare.stat().st_size / MB:7.1f} MB  "
                  f"(ratio {size / bare.stat().st_size:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
