"""Real Linux kernel trees for the real-input tests, the benchmark and the demo, fetched and extracted once.

Linux 6.1 comes from Debian 12's own packages (linux-source-6.1 + linux-config-6.1, installed by the
Makefile's APT_KERNEL line). Linux 7.2 comes from sid's linux-source-7.2 + linux-config-7.2, fetched with
`apt-get download` through a private apt configuration (own sources list, state and cache dirs under the
cache dir) that reuses the mirror URI of this machine's apt sources with suite sid: nothing outside the cache
dir is touched, and no mirror host is written into the repository.

Each tree is extracted once under ${WDIMAGE_CACHE:-~/.cache/wdimage}/kernel-trees/, and only the part that
the Kconfig parse and `make olddefconfig` need (Kconfig files, Makefiles, scripts/, arch/x86/): measured
for 6.1 here, 8-10 s and 53 MB instead of 19 s and 1.5 GB for the whole tree (xz decompression dominates).

  python -m tests.kernel_trees fetch [6.1|7.2]...   fetch and extract, print the paths
  python -m tests.kernel_trees full [6.1]...        the whole tree (to compile it), print its path
  python -m tests.kernel_trees demo                 the `make demo-kernel-config` demonstration
(APT::Sandbox::User=root: the private cache dirs belong to the user running this, not to _apt.)
"""

import contextlib
import dataclasses
import fcntl
import lzma
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from wdimage.fileio import write_atomically

# apt-get's progress goes to the process's stderr, as a file descriptor: under pytest-xdist sys.stderr is no file.
STDERR_FD = 2

CACHE = Path(os.environ.get("WDIMAGE_CACHE") or Path.home() / ".cache" / "wdimage")
TREES = CACHE / "kernel-trees"
# What the Kconfig parse and `make olddefconfig` read; everything else in the tarball is left packed.
NEEDED_MEMBERS = ("*Kconfig*", "*Makefile*", "*/scripts/*", "*/arch/x86/*")
FLAVOURS = ("amd64_none_amd64", "amd64_none_cloud-amd64", "amd64_rt_amd64")
# Every symbol the watchdog fragments touch, switched off to make the "before" config of the tests.
WATCHDOG_SYMBOLS = ("WATCHDOG", "WATCHDOG_CORE", "I6300ESB_WDT", "IB700_WDT", "ITCO_WDT", "DIAG288_WATCHDOG")

SUITES = {"6.1": "bookworm", "6.12": "trixie", "7.2": "sid"}


@dataclasses.dataclass(frozen=True)
class KernelTree:
    version: str
    src: Path  # the extracted tree (Kconfig files, Makefiles, scripts/, arch/x86/)
    configs: dict[str, Path]  # Debian's own configs by flavour, decompressed

    def config(self, flavour: str = "amd64_none_amd64") -> Path:
        return self.configs[flavour]


def debian_mirror() -> str:
    """The main Debian mirror URI of this machine's apt sources (not the security one)."""
    candidates: list[str] = []
    parts = Path("/etc/apt/sources.list.d")
    files = sorted(parts.glob("*.sources")) + sorted(parts.glob("*.list")) + [Path("/etc/apt/sources.list")]
    for f in files:
        if not f.is_file():
            continue
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
                if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
                    candidates += fields.get("URIs", "").split()
        else:
            candidates += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M)
    for uri in candidates:
        if re.search(r"/debian/?$", uri):
            return uri.rstrip("/")
    for uri in candidates:  # a mirror laid out differently: any Debian URI that is not the security one
        if "debian" in uri and "security" not in uri:
            return uri.rstrip("/")
    raise RuntimeError(f"no Debian mirror found in {parts} or /etc/apt/sources.list")


def _private_apt_options(suite: str, arch: str | None = None) -> list[str]:
    """apt-get options for a private configuration that sees only `suite` of this machine's Debian mirror
    (with `arch`: only that Debian architecture's packages)."""
    root = CACHE / "apt" / (f"{suite}-{arch}" if arch else suite)
    for sub in ("lists/partial", "archives/partial", "parts"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    sources = root / "sources.list"
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    sources.write_text(f"deb [signed-by={keyring}] {debian_mirror()} {suite} main\n")
    return [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", f"Dir::Etc::SourceParts={root / 'parts'}",
        "-o", f"Dir::State::Lists={root / 'lists'}",
        "-o", f"Dir::Cache={root}",
        "-o", f"Dir::Cache::archives={root / 'archives'}",
        "-o", "Dir::Cache::pkgcache=", "-o", "Dir::Cache::srcpkgcache=",
        "-o", "APT::Get::List-Cleanup=false", "-o", "APT::Sandbox::User=root",
        *(["-o", f"APT::Architecture={arch}", "-o", f"APT::Architectures={arch}"] if arch else []),
    ]


def _download_debs(suite: str, packages: list[str], dest: Path) -> list[Path]:
    opts = _private_apt_options(suite)
    lists = CACHE / "apt" / suite / "lists"
    if not any(lists.glob("*Packages*")):
        subprocess.run(["apt-get", *opts, "-q", "update"], check=True, stdout=STDERR_FD)
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", *opts, "-q", "download", *packages], check=True, cwd=dest, stdout=STDERR_FD)
    return sorted(dest.glob("*.deb"))


def debian_arch_config(arch: str, version: str = "6.1") -> Path:
    """Debian's own kernel config for the Debian architecture `arch` (arm64, s390x): /boot/config-* of the
    kernel package its linux-image-ARCH metapackage depends on in `version`'s suite, fetched through a private
    apt configuration for that architecture (linux-config-6.1 on amd64 holds only the amd64 configs). Kept
    under ${WDIMAGE_CACHE}/inputs/debian-kernel-configs/; the .deb itself is deleted."""
    directory = CACHE / "inputs" / "debian-kernel-configs"
    found = sorted(directory.glob(f"config-{version}.*-{arch}"))
    if found:
        return found[-1]
    suite = SUITES[version]
    opts = _private_apt_options(suite, arch)
    lists = CACHE / "apt" / f"{suite}-{arch}" / "lists"
    if not any(lists.glob("*Packages*")):
        subprocess.run(["apt-get", *opts, "-q", "update"], check=True, stdout=STDERR_FD)
    depends = subprocess.run(["apt-cache", *opts, "depends", f"linux-image-{arch}"], check=True,
                             capture_output=True, text=True).stdout
    image = re.search(rf"Depends: (linux-image-{re.escape(version)}\.\S+-{arch})\n", depends)
    if image is None:
        raise RuntimeError(f"linux-image-{arch} in {suite} depends on no linux-image-{version}.*: {depends}")
    with tempfile.TemporaryDirectory(prefix="wdimage-deb-") as tmp:
        subprocess.run(["apt-get", *opts, "-q", "download", image.group(1)], check=True, cwd=tmp, stdout=STDERR_FD)
        (deb,) = Path(tmp).glob("*.deb")
        subprocess.run(f"dpkg-deb --fsys-tarfile {deb} | tar -x -C {tmp} --wildcards './boot/config-*'",
                       shell=True, check=True)
        (config,) = Path(tmp, "boot").glob("config-*")
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / config.name
        write_atomically(target, config.read_bytes())
    return target


def _installed_or_fetched(version: str) -> tuple[Path, Path]:
    """The linux-source tarball and linux-config dir of `version`: installed ones, else fetched from its suite."""
    tarball = Path(f"/usr/src/linux-source-{version}.tar.xz")
    configs = Path(f"/usr/src/linux-config-{version}")
    if tarball.is_file() and configs.is_dir():
        return tarball, configs
    unpacked = CACHE / "debs" / version / "root"
    tarball = unpacked / f"usr/src/linux-source-{version}.tar.xz"
    configs = unpacked / f"usr/src/linux-config-{version}"
    if not (tarball.is_file() and configs.is_dir()):
        debs = _download_debs(SUITES[version], [f"linux-source-{version}", f"linux-config-{version}"],
                              CACHE / "debs" / version)
        # Unpacked beside `unpacked` and renamed into place: an interrupted unpack never looks complete.
        shutil.rmtree(unpacked, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=unpacked.parent))
        try:
            for deb in debs:
                subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], check=True)
            tmp.rename(unpacked)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for deb in debs:
            deb.unlink()
    return tarball, configs


def _extract(tarball: Path, dest: Path, members: tuple[str, ...] = NEEDED_MEMBERS) -> Path:
    """Extract `members` of `tarball` (all of it if none) into `dest` (atomically: a temp dir renamed into
    place)."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest.parent))
    try:
        wildcards = ["--wildcards", *members] if members else []
        subprocess.run(["tar", "-xJf", str(tarball), "-C", str(tmp), *wildcards], check=True)
        (top,) = tmp.iterdir()
        top.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def kernel_tree(version: str) -> KernelTree:
    """The cached tree and Debian configs of Linux `version` (6.1 or 7.2), fetching/extracting on first use."""
    if version not in SUITES:
        raise ValueError(f"unknown kernel tree {version!r}; known: {', '.join(SUITES)}")
    TREES.mkdir(parents=True, exist_ok=True)
    with _exclusive(TREES / ".lock"):
        _remove_leftovers()
        tarball, config_dir = _installed_or_fetched(version)
        stamp = f"{tarball.stat().st_size}-{int(tarball.stat().st_mtime)}"
        src = TREES / f"linux-{version}-{stamp}"
        if not (src / "Kconfig").is_file():
            for old in TREES.glob(f"linux-{version}-*"):
                shutil.rmtree(old, ignore_errors=True)
            _extract(tarball, src)
        configs = {}
        for flavour in FLAVOURS:
            packed = config_dir / f"config.{flavour}.xz"
            plain = TREES / f"config-{version}-{stamp}.{flavour}"
            if packed.is_file():
                if not plain.is_file():
                    write_atomically(plain, lzma.decompress(packed.read_bytes()))
                configs[flavour] = plain
    return KernelTree(version, src, configs)


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """One extraction at a time (concurrent test sessions share the cache)."""
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _remove_leftovers() -> None:
    """What a process killed outright (SIGKILL, power loss) left half done; called under the lock, so no
    extraction of another process is under way."""
    for leftover in [*TREES.glob(".extract-*"), *(CACHE / "debs").glob("*/.unpack-*")]:
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in TREES.glob(".config-*.tmp"):
        leftover.unlink(missing_ok=True)


def full_kernel_tree(version: str = "6.1") -> Path:
    """The whole source tree of Linux `version` (for compiling it), extracted once under the cache as
    full-linux-VERSION-STAMP (about 1.5 GB for 6.1; 20 s of xz). Older stamps of it are removed."""
    if version not in SUITES:
        raise ValueError(f"unknown kernel tree {version!r}; known: {', '.join(SUITES)}")
    TREES.mkdir(parents=True, exist_ok=True)
    tarball, _ = _installed_or_fetched(version)
    stamp = f"{tarball.stat().st_size}-{int(tarball.stat().st_mtime)}"
    src = TREES / f"full-linux-{version}-{stamp}"
    if not (src / "Kconfig").is_file():
        for old in TREES.glob(f"full-linux-{version}-*"):
            shutil.rmtree(old, ignore_errors=True)
        _extract(tarball, src, members=())
    return src


def tiny_config(src: Path) -> Path:
    """The kernel's own `make tinyconfig` of the tree `src`, written once beside it as tinyconfig-TREE.config:
    the base of the suite's guest kernel (tests/fixtures/kernel/tiny-guest.config adds what the image needs).
    A stable path, so that the image built from it is cached like any other (tests/build_cache.py)."""
    path = TREES / f"tinyconfig-{src.name}.config"
    with _exclusive(TREES / ".lock"):
        if not path.is_file():
            with tempfile.TemporaryDirectory(prefix=".extract-tinyconfig-", dir=TREES) as obj:
                subprocess.run(["make", "-s", "-C", str(src), f"O={obj}", "tinyconfig"], check=True,
                               stdout=subprocess.DEVNULL)
                write_atomically(path, (Path(obj) / ".config").read_text())
    return path


def without_watchdog(config_text: str) -> str:
    """`config_text` with every watchdog symbol of the fragments switched off (the tests' "before" config)."""
    names = "|".join(WATCHDOG_SYMBOLS)
    return re.sub(rf"^(?:CONFIG_({names})=.*|# CONFIG_({names}) is not set)$",
                  lambda m: f"# CONFIG_{m.group(1) or m.group(2)} is not set", config_text, flags=re.M)


def _demo() -> int:
    """Merge the watchdog fragments into Debian's 6.1 amd64 config (watchdog off), then check it."""
    tree = kernel_tree("6.1")
    work = Path(tempfile.mkdtemp(prefix="wdimage-demo-"))
    config = work / ".config"
    config.write_text(without_watchdog(tree.config().read_text()))
    wdimage = [sys.executable, "-m", "wdimage"]
    steps = [
        [*wdimage, "kernel-config", "--check", "--config", str(config)],
        [*wdimage, "kernel-config", "--merge", "--kernel-src", str(tree.src), "--config", str(config)],
        [*wdimage, "kernel-config", "--check", "--kernel-src", str(tree.src), "--config", str(config),
         "--strict"],
    ]
    for argv in steps:
        print(f"\n$ wdimage {' '.join(argv[3:])}", flush=True)
        rc = subprocess.run(argv).returncode
        print(f"(exit {rc})", flush=True)
        if argv is not steps[0] and rc != 0:
            return rc
    print(f"\nmerged config: {config} (previous one kept as {config}.old)")
    # A value that cannot take effect: without PCI, neither i6300esb nor iTCO can be enabled.
    no_pci = work / "no-pci.config"
    no_pci.write_text(config.read_text().replace("CONFIG_PCI=y", "# CONFIG_PCI is not set"))
    argv = [*wdimage, "kernel-config", "--merge", "--kernel-src", str(tree.src), "--config", str(no_pci),
            "--model", "itco"]
    print(f"\n$ wdimage {' '.join(argv[3:])}   # with CONFIG_PCI switched off", flush=True)
    rc = subprocess.run(argv).returncode
    print(f"(exit {rc}: expected 3, and {no_pci} left as it was)", flush=True)
    return 0 if rc == 3 else 1


def _terminate(signum, frame):
    raise KeyboardInterrupt  # SIGTERM, too, runs the `finally` cleanups (partial extraction removed)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    if argv[:1] == ["demo"]:
        return _demo()
    if argv[:1] == ["full"]:
        for version in argv[1:] or ["6.1"]:
            print(f"{version}: {full_kernel_tree(version)}")
        return 0
    if argv[:1] == ["fetch"]:
        for version in argv[1:] or ["6.1", "7.2"]:
            tree = kernel_tree(version)
            print(f"{version}: {tree.src}")
            for flavour, path in tree.configs.items():
                print(f"  {flavour}: {path}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
