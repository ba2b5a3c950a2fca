"""Benchmark `wdimage build --kernel source`'s kernel half (wdimage/image/kernel_build.py) on Debian's Linux 6.1:

    .venv/bin/python bench/bench_kernel_build.py [--tree DIR] [--no-plain] [--no-warm]

  cold   wdimage's whole kernel build with the small default config (defconfig + kvm_guest.config + the
         guest and watchdog fragments): configure, prove, compile (ccache on, but empty), bindeb-pkg
  plain  the kernel's own `make -jN bzImage modules` of the same tree and the very same .config, out of tree,
         without ccache, in the same run: the ratio cold/plain is wdimage's overhead (goal: <= 1.10)
  warm   the same again after one fragment value changed (CONFIG_SOFT_WATCHDOG=m from a --fragment): make's
         incremental build in the reused object directory, through ccache
  again  the same tree and config once more: the cached packages, nothing compiled

Everything runs under a private, empty WDIMAGE_CACHE (and so an empty ccache) in a temporary directory.
Prints figures; asserts nothing about time (the machine is shared and noisy). Two cold compiles: about
25 minutes on two idle cores.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.kernel_trees import full_kernel_tree  # noqa: E402
from wdimage import log  # noqa: E402
from wdimage.image import kernel_build
from wdimage.models import Model  # noqa: E402


def timed(label: str, fn):
    start = time.monotonic()
    result = fn()
    seconds = time.monotonic() - start
    print(f"{label:<58} {seconds:8.1f} s", flush=True)
    return seconds, result


def drop_page_cache() -> str:
    """Both cold compiles start from a cold page cache (the first would otherwise read the tree from disk for
    the second): as root, the kernel's caches are dropped before each."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "page cache dropped"
    except OSError as e:
        return f"page cache kept ({e.strerror}): the first cold compile reads the tree from disk"


def plain_make(tree: Path, config: Path, obj: Path) -> None:
    obj.mkdir(parents=True)
    shutil.copyfile(config, obj / ".config")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCACHE")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "ccache" not in p)
    subprocess.run(["make", "-s", "-C", str(tree), f"O={obj}", f"-j{len(os.sched_getaffinity(0))}",
                    "bzImage", "modules"], check=True, env=env, stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, help="a clean kernel tree (default: Debian's linux-source-6.1)")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain make (one cold compile less)")
    parser.add_argument("--no-warm", action="store_true", help="skip the warm rebuild")
    args = parser.parse_args()
    tree = (args.tree or full_kernel_tree("6.1")).absolute()
    work = Path(tempfile.mkdtemp(prefix="wdimage-bench-kernel-"))
    os.environ["WDIMAGE_CACHE"] = str(work / "cache")
    os.environ.pop("CCACHE_DIR", None)
    log.quiet = True
    try:
        source = kernel_build.validate_source(tree)
        print(f"Linux {kernel_build.kernel_version(tree)} from {tree}, {len(os.sched_getaffinity(0))} jobs, "
              f"ccache {'on' if kernel_build._ccache_dir() else 'not installed'}", flush=True)
        print(f"  {drop_page_cache()}", flush=True)
        cold, built = timed("cold: wdimage kernel build (configure..bindeb-pkg)",
                            lambda: kernel_build.prepare(source, Model.I6300ESB, "debian"))
        print(f"  release {built.release}, packages: "
              f"{', '.join(p.name for p in built.packages.iterdir())}", flush=True)
        if not args.no_plain:
            print(f"  {drop_page_cache()}", flush=True)
            plain, _ = timed("plain: make -jN bzImage modules, same .config, no ccache",
                             lambda: plain_make(tree, built.directory / "config", work / "plain"))
            print(f"  overhead: cold / plain = {cold / plain:.3f} (goal <= 1.10)", flush=True)
        if not args.no_warm:
            fragment = work / "soft.config"
            fragment.write_text("CONFIG_SOFT_WATCHDOG=m\n")
            changed = kernel_build.validate_source(tree, fragments=[fragment])
            warm, rebuilt = timed("warm: one fragment value changed (incremental + ccache)",
                                  lambda: kernel_build.prepare(changed, Model.I6300ESB, "debian"))
            print(f"  release {rebuilt.release}; warm / cold = {warm / cold:.3f}", flush=True)
        again, reused = timed("again: same tree and config (cached packages)",
                              lambda: kernel_build.prepare(source, Model.I6300ESB, "debian"))
        print(f"  reused: {reused.cached}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
