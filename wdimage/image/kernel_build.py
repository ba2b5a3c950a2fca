"""`wdimage build --kernel source`: the guest's kernel compiled on the host from a kernel tree, configured by
wdimage and proved before a single file is compiled.

  configure  the tree's `make defconfig kvm_guest.config` plus kconfig-fragments/guest-kernel.config (or the
             user's --config), the watchdog fragments and the user's --fragment files merged and proved with
             kernel_config.merge_fragments (a value that does not stick: exit 3, explained), then the kernel's
             own `make olddefconfig` and the values checked again; all in a scratch directory (O=), so that a
             config that does not stick, or a dry run, never waits for another build's compile
  compile    `make O=... -jN TARGET`, the distro's packaging target (wdimage.image.distros: Debian's bindeb-pkg
             makes the kernel's own .deb packages, Gentoo's tar-pkg a tarball), through ccache where it is
             installed; the compiler's output goes to a log, a progress line each minute
  cache      ${WDIMAGE_CACHE}/kernel-builds/TREE/CONFIG/: a second build of the same tree and config compiles
             nothing; one object directory per tree (O=) is reused, so a changed fragment recompiles only what
             it changes

The kernel release names wdimage and the config: LOCALVERSION=-wdimage-<first 8 hex digits of its sha256>.
"""

import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from wdimage import log, run
from wdimage.errors import ExitCode, WdimageError, failure, usage_error
from wdimage.fileio import cache_dir, write_atomically
from wdimage.image import distros
from wdimage.kconfig.config import check_config, merge_fragments
from wdimage.kconfig.fragments import config_values, fragments_dir, read_config_text
from wdimage.models import DEFAULT_MODELS, Model

GUEST_FRAGMENT = "guest-kernel.config"  # what systemd and the image need; only with the default config
DEFAULT_BASE = ("defconfig", "kvm_guest.config")
PATH_RE = re.compile(r"[A-Za-z0-9._/+-]+")  # the kernel's make refuses spaces and colons in srctree/objtree
RELEASE_RE = re.compile(r"[0-9][A-Za-z0-9.+_-]{0,63}")  # goes into DIB's environment and file names
# What the kernel's build needs besides make and a C compiler (6.1 with the default config and bindeb-pkg).
TOOLS = ("make", "gcc", "ld", "flex", "bison", "bc", "perl", "openssl", "cpio", "rsync", "depmod")
LIBELF_HEADER = Path("/usr/include/libelf.h")
# Arch markers of a .config, for telling a config of another architecture.
_ARCH_SYMBOLS = {"X86": "x86", "ARM64": "arm64", "ARM": "arm", "RISCV": "riscv", "PPC": "powerpc",
                 "S390": "s390", "MIPS": "mips", "LOONGARCH": "loongarch", "SPARC": "sparc"}
PROGRESS_EVERY = 60.0  # seconds between progress lines while compiling
FACTS_FILE = "kernel-build.json"



def host_arch() -> str:
    from wdimage.kconfig.tree import host_arch as arch  # kconfiglib is imported only where a tree is parsed
    return arch()


def kernel_version(src: Path) -> str:
    from wdimage.kconfig.tree import kernel_version as version
    return version(src)

@dataclasses.dataclass(frozen=True)
class KernelSource:
    """The user's --kernel-src, --config and --fragment, validated (exit 2 naming the option at fault)."""

    src: Path
    config: Path | None = None  # None: the small default (defconfig + kvm_guest.config + guest-kernel.config)
    fragments: tuple[Path, ...] = ()


@dataclasses.dataclass(frozen=True)
class KernelBuild:
    """A compiled kernel, ready to be installed into an image: its packages and what it was built from."""

    src: Path
    version: str  # the tree's KERNELVERSION
    release: str  # `make kernelrelease`: what `uname -r` says in the guest
    config_sha256: str
    base_config: str  # "defconfig + kvm_guest.config" or the user's --config
    fragments: tuple[str, ...]  # applied in order; wdimage's as kconfig-fragments/NAME
    compiler: str  # CONFIG_CC_VERSION_TEXT
    ccache: bool
    directory: Path  # the cached result: packages/, config, build log, kernel-build.json
    seconds: float  # configure + compile (+ packaging) of the run that made it
    cached: bool  # this run reused a previous compile

    @property
    def packages(self) -> Path:
        """What goes into the image: the linux-image .deb (Debian) or the kernel's tarball (Gentoo)."""
        return self.directory / "packages"

    def to_manifest(self) -> dict:
        return {"from": "source", "tree": str(self.src), "version": self.version, "release": self.release,
                "config_sha256": self.config_sha256, "base_config": self.base_config,
                "fragments": list(self.fragments), "compiler": self.compiler, "ccache": self.ccache,
                "seconds": round(self.seconds, 1), "cached": self.cached}


# --- validation (before any work) -----------------------------------------------------------------------------

def validate_source(src: str | Path, config: str | Path | None = None,
                    fragments: Sequence[str | Path] = ()) -> KernelSource:
    """Check the tree, the config and the fragment files the user named; exit 2 naming the one at fault."""
    tree = Path(src).absolute()
    if not tree.is_dir():
        raise usage_error(f"--kernel-src {src}: no such directory")
    missing = [name for name in ("Makefile", "Kconfig") if not (tree / name).is_file()]
    if missing:
        raise usage_error(f"--kernel-src {src}: not a kernel source tree (no {' or '.join(missing)})",
                          hint="point --kernel-src at an extracted Linux source tree")
    if not PATH_RE.fullmatch(str(tree)):
        raise usage_error(f"--kernel-src {src}: the kernel's build cannot handle this path; use one of "
                          "letters, digits, '.', '_', '+', '-', '/'")
    configured = [name for name in (".config", "include/config", "include/generated") if (tree / name).exists()]
    if configured:
        raise usage_error(f"--kernel-src {src}: the tree was configured or built in place ({', '.join(configured)}); "
                          "an out-of-tree build (O=) needs a clean source tree",
                          hint=f"copy {tree / '.config'} elsewhere (to pass it as --config), "
                               f"then run 'make mrproper' in {tree}")
    user_config = None
    if config is not None:
        user_config = Path(config).absolute()
        if not user_config.is_file():
            raise usage_error(f"--config {config}: no such file")
        _check_arch(user_config, read_config_text(user_config))
    checked = []
    for fragment in fragments:
        path = Path(fragment).absolute()
        if not path.is_file():
            raise usage_error(f"--fragment {fragment}: no such file")
        checked.append(path)
    return KernelSource(tree, user_config, tuple(checked))


def _check_arch(path: Path, text: str) -> None:
    """Exit 2 if the config was made for an architecture other than this machine's."""
    want = host_arch()
    header = re.search(r"^# Linux/(\S+) \S+ Kernel Configuration", text, re.M)
    values = config_values(text)
    found = header.group(1) if header else next(
        (arch for symbol, arch in _ARCH_SYMBOLS.items() if values.get(symbol) == "y"), None)
    if found is not None and found != want:
        raise usage_error(f"--config {path}: a config for ARCH={found}; this machine builds ARCH={want}",
                          hint="cross-compiling the guest kernel is not supported; give an x86 config")


def check_tools(distro: str) -> None:
    """Exit 1 naming what the kernel's build needs and this machine lacks."""
    packaging = distros.get(distro).kernel_packaging
    missing = [tool for tool in (*TOOLS, *(packaging.tools if packaging else ())) if shutil.which(tool) is None]
    if not LIBELF_HEADER.is_file():
        missing.append(f"libelf headers ({LIBELF_HEADER})")
    if missing:
        raise failure(f"compiling the kernel needs {', '.join(missing)}, not found on this machine",
                      hint="run 'make deps' (Debian packages flex bison bc libelf-dev libssl-dev ... "
                           "in the Makefile's APT_KERNEL list)")


# --- the build ------------------------------------------------------------------------------------------------

def models_for(model: Model) -> list[Model]:
    """A source kernel carries the chosen model's driver and the seed article's two (i6300esb, ib700)."""
    return list(dict.fromkeys([model, *DEFAULT_MODELS]))


def kernel_builds_dir() -> Path:
    return cache_dir() / "kernel-builds"


def tree_key(src: Path) -> str:
    """The tree's identity: its path, version and every file's path, size and modification time
    (what make itself trusts), hashed. Hashing 1.5 GB of content would cost more than it proves."""
    digest = hashlib.sha256(f"{src}\0{kernel_version(src)}\0".encode())
    for directory, subdirs, files in os.walk(src):
        subdirs.sort()
        for name in sorted(files):
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            digest.update(f"{os.path.relpath(os.path.join(directory, name), src)}\0{st.st_size}\0"
                          f"{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def prepare(source: KernelSource, model: Model, distro: str, *, compile: bool = True) -> KernelBuild:
    """Configure (and prove) the kernel, then compile it unless this tree and config were compiled before.
    With compile=False (a dry run), stop after the configuration: the result names where it would be.
    The configuration happens in a scratch directory, so that it never waits for another compile."""
    check_tools(distro)
    clock = time.monotonic()
    with log.step(f"fingerprinting the kernel tree {source.src}"):
        tree = kernel_builds_dir() / tree_key(source.src)
    tree.mkdir(parents=True, exist_ok=True)
    logfile = _log_path(tree)
    with tempfile.TemporaryDirectory(prefix="configure-", dir=tree) as scratch:
        with log.step(f"configuring Linux {kernel_version(source.src)} (log: {logfile})"):
            fragments = configure(source, Path(scratch), models_for(model), logfile)
        config_text = (Path(scratch) / ".config").read_text()
        config_sha = hashlib.sha256(config_text.encode()).hexdigest()
        localversion = f"-wdimage-{config_sha[:8]}"
        release = _kernel_release(source.src, Path(scratch), localversion, logfile)
    build = KernelBuild(
        src=source.src, version=kernel_version(source.src), release=release, config_sha256=config_sha,
        base_config=str(source.config) if source.config else " + ".join(DEFAULT_BASE), fragments=fragments,
        compiler=config_values(config_text).get("CC_VERSION_TEXT", "").strip('"'), ccache=_ccache_dir() is not None,
        directory=tree / f"{distro}-{config_sha[:16]}", seconds=0.0, cached=False)
    if not compile:
        return _cached_facts(build.directory) or build
    with _locked(tree / "lock"):  # one compile per tree at a time: they share its object directory
        facts = _cached_facts(build.directory)
        if facts is not None:
            log.info(f"reusing the kernel {release} compiled before ({build.directory})")
            return dataclasses.replace(facts, cached=True)
        obj = tree / "obj"
        obj.mkdir(exist_ok=True)
        if not (obj / ".config").is_file() or (obj / ".config").read_text() != config_text:
            write_atomically(obj / ".config", config_text)
        target = distros.get(distro).kernel_packaging.target
        with log.step(f"compiling {release} (make {target} in O={obj}, {_jobs()} jobs"
                      f"{', ccache' if build.ccache else ''}; log: {logfile})"):
            _compile(source.src, obj, localversion, release, target, logfile)
        build = dataclasses.replace(build, seconds=time.monotonic() - clock)
        _collect(build, tree, obj, target, logfile)
        return build


def configure(source: KernelSource, obj: Path, models: Sequence[Model], logfile: Path) -> tuple[str, ...]:
    """Write obj/.config: the base config, the fragments merged and proved (exit 3 if a value does not
    stick), then the kernel's own olddefconfig, checked again. Returns the fragments applied, in order."""
    config = obj / ".config"
    extra = list(source.fragments)
    if source.config is None:
        _make(source.src, obj, [*DEFAULT_BASE], logfile)
        extra.insert(0, fragments_dir() / GUEST_FRAGMENT)
    else:
        write_atomically(config, read_config_text(source.config))
    report = merge_fragments(config, models, kernel_src=source.src, output=config, extra_fragments=extra)
    if not report.ok:
        base = f"--config {source.config}" if source.config else "the tree's " + " + ".join(DEFAULT_BASE)
        text = report.explain().replace(f"{config} left as it was", f"{base} left as it was")
        raise WdimageError(f"the kernel config does not take wdimage's values; nothing was compiled:\n{text}",
                           hint="fix the config or the fragment named above", code=ExitCode.NOT_EFFECTIVE)
    _make(source.src, obj, ["olddefconfig"], logfile)
    after = check_config(config, models, extra_fragments=extra)
    if not after.ok:
        raise WdimageError(f"the kernel's own `make olddefconfig` undid wdimage's values; nothing was compiled:\n"
                           f"{after.explain()}", code=ExitCode.NOT_EFFECTIVE)
    prefix = f"{fragments_dir()}/"
    return tuple(f"kconfig-fragments/{str(f)[len(prefix):]}" if str(f).startswith(prefix) else str(f)
                 for f in report.fragments)


def _make(src: Path, obj: Path, targets: list[str], logfile: Path, **variables: str) -> str:
    """A quick make run (configuration targets): its output appended to the log, stdout returned."""
    argv = ["make", "-s", "-C", str(src), f"O={obj}", *(f"{k}={v}" for k, v in variables.items()), *targets]
    proc = run.run(argv, env=_environment(), capture=True, check=False)
    with open(logfile, "a") as f:
        f.write(f"$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        raise failure(f"make {' '.join(targets)} failed in {src}:\n{_error_lines(proc.stdout + proc.stderr)}",
                      hint=f"the full log is {logfile}")
    return proc.stdout


def _kernel_release(src: Path, obj: Path, localversion: str, logfile: Path) -> str:
    release = _make(src, obj, ["kernelrelease"], logfile, LOCALVERSION=localversion).strip().splitlines()[-1]
    if not RELEASE_RE.fullmatch(release):
        raise failure(f"the tree's kernel release {release!r} is not a plain version string")
    return release


def _jobs() -> int:
    return len(os.sched_getaffinity(0))


def _ccache_dir() -> Path | None:
    """The masquerade directory of an installed ccache (gcc there runs ccache gcc), or None."""
    masquerade = Path("/usr/lib/ccache")
    return masquerade if shutil.which("ccache") and (masquerade / "gcc").exists() else None


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    masquerade = _ccache_dir()
    if masquerade:
        env["PATH"] = f"{masquerade}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
        env.setdefault("CCACHE_DIR", str(cache_dir() / "ccache"))
        env.setdefault("CCACHE_NOHASHDIR", "true")  # objects do not depend on which O= directory built them
        # Depend mode: no separate preprocessor run per file (a cold compile would pay 10-25 % for it); hits
        # come from direct mode, e.g. the same config compiled again in a new object directory.
        env.setdefault("CCACHE_DEPEND", "true")
    env.update(KBUILD_BUILD_USER="wdimage", KBUILD_BUILD_HOST="wdimage")
    return env


def _compile(src: Path, obj: Path, localversion: str, release: str, target: str, logfile: Path) -> None:
    """Run the kernel's build; a progress line each minute; on failure the compiler's last errors."""
    # KDEB_COMPRESS=none: the packages stay in wdimage's cache and are installed once into the image, which is
    # compressed itself; gzip cost about 10 s of a 2-core build (measured on 6.1, packaging alone 47 s -> 37 s).
    argv = ["make", "-C", str(src), f"O={obj}", f"-j{_jobs()}", f"LOCALVERSION={localversion}",
            f"KDEB_PKGVERSION={release}-1", "KDEB_COMPRESS=none", target]
    start = time.monotonic()
    with open(logfile, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        with run.running(argv, env=_environment(), output=out, merge_stderr=True) as make:  # stopped if interrupted
            progress = _Progress(logfile)
            while (code := make.wait(timeout=PROGRESS_EVERY)) is None:
                log.info(progress.line(time.monotonic() - start))
    if code != 0:
        text = logfile.read_text(errors="replace")
        raise failure(f"the kernel build failed (make {target}, exit code {code}):\n"
                      f"{_error_lines(text)}", hint=f"the full log is {logfile}; nothing was published")


class _Progress:
    """Reads the build log as it grows: how many files were compiled so far, and the last one."""

    def __init__(self, logfile: Path):
        self.logfile = logfile
        self.offset = logfile.stat().st_size
        self.compiled = 0
        self.last = ""

    def line(self, elapsed: float) -> str:
        with open(self.logfile, errors="replace") as f:
            f.seek(self.offset)
            text = f.read()
            self.offset = f.tell()
        steps = re.findall(r"^\s+(CC|LD|AR|AS)(?: \[M\])?\s+(\S+)$", text, re.M)
        self.compiled += sum(1 for kind, _ in steps if kind == "CC")
        if steps:
            self.last = steps[-1][1]
        return f"{elapsed / 60:.0f} min: {self.compiled} files compiled{f' (now {self.last})' if self.last else ''}"


def _error_lines(text: str, count: int = 15) -> str:
    """The compiler's last error lines (and make's verdict), else the log's last lines."""
    lines = text.splitlines()
    errors = [line for line in lines if re.search(r"error|Error \d|\*\*\*|No rule to make", line)]
    return "\n".join((errors or lines)[-count:])


def _collect(build: KernelBuild, tree: Path, obj: Path, target: str, logfile: Path) -> None:
    """Move the packages the build made into the cached result directory (atomically: a temporary directory
    renamed into place), with the config, the log and the facts."""
    staging = tree / f".{build.directory.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "packages").mkdir(parents=True)
    if target == "bindeb-pkg":  # dpkg-buildpackage writes to the object directory's parent
        made = sorted(p for p in tree.iterdir() if p.is_file() and f"_{build.release}-1_" in p.name)
        images = [p for p in made if p.name.startswith(f"linux-image-{build.release}_")]
    else:
        made = images = sorted(obj.glob(f"linux-{build.release}-*.tar"))
    if not images:
        raise failure(f"make {target} succeeded but left no kernel package for {build.release}",
                      hint=f"see {logfile}")
    for path in made:
        path.rename(staging / ("packages" if path in images else ".") / path.name)
    shutil.copyfile(obj / ".config", staging / "config")
    shutil.copyfile(logfile, staging / "build.log")
    facts = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(build).items()}
    facts["made"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_atomically(staging / FACTS_FILE, json.dumps(facts, indent=2) + "\n")
    shutil.rmtree(build.directory, ignore_errors=True)
    staging.rename(build.directory)
    log.info(f"kernel packages: {build.packages}")


def _cached_facts(result: Path) -> KernelBuild | None:
    try:
        facts = json.loads((result / FACTS_FILE).read_text())
        build = KernelBuild(**{k: facts[k] for k in (f.name for f in dataclasses.fields(KernelBuild))})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    build = dataclasses.replace(build, src=Path(build.src), directory=Path(build.directory),
                                fragments=tuple(build.fragments))
    return build if build.packages.is_dir() and any(build.packages.iterdir()) else None


def _log_path(tree: Path) -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = tree / "logs" / f"build-{stamp}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class _locked:
    """One kernel build per tree at a time (they share its object directory)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.file = open(self.path, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info(f"waiting for another kernel build of this tree ({self.path.parent}) ...")
            fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.file.close()
