"""How long the SBOM and the manifest diff take on a real package list (this machine's dpkg database).

Prints figures, asserts nothing: the machine is shared, timings are noisy.
"""

import copy
import json
import subprocess
import tempfile
import time
from pathlib import Path

from wdimage.image.manifest import from_json
from wdimage.image.manifest_diff import diff_manifests
from wdimage.image.sbom import write_sbom


def host_packages() -> list[dict]:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${Architecture}\n"],
                         check=True, capture_output=True, text=True).stdout
    return [dict(zip(("name", "version", "arch"), line.split("\t"))) for line in out.splitlines() if line]


def best_of(runs: int, func) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    packages = host_packages()
    manifest = {"schema": 1, "name": "bench", "distro": "debian", "release": "bookworm", "model": "i6300esb",
                "packages": {"watchdog": {"name": "watchdog", "version": "5.16-1+b2"}},
                "installed_packages": packages, "build": {"started": "2026-11-24T20:00:00Z", "seconds": 1.0}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sbom.cdx.json"
        typed = from_json(manifest, path.parent / "manifest.json")
        seconds = best_of(3, lambda: write_sbom(typed, path))
        size = path.stat().st_size
    print(f"sbom: {len(packages)} packages -> {size / 1024:.0f} KiB CycloneDX JSON in {seconds:.2f} s (best of 3)")
    other = copy.deepcopy(manifest)
    for package in other["installed_packages"][::10]:
        package["version"] += "+bench"
    seconds = best_of(5, lambda: diff_manifests(manifest, other))
    changed = len(diff_manifests(manifest, other).installed_changed)
    print(f"diff: {len(packages)} vs {len(packages)} packages, {changed} changed, in {seconds * 1000:.1f} ms "
          f"(best of 5); manifest {len(json.dumps(manifest)) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
