"""A kernel's Kconfig tree, parsed with kconfiglib as the kernel's own `make *config` would: the one module
that imports kconfiglib.

The environment is set as the kernel Makefile sets it before it runs scripts/kconfig/conf (srctree, ARCH and
SRCARCH, KERNELVERSION, CC, LD, CC_VERSION_TEXT, OBJCOPY, ...), and the `$(shell,...)` macros of the tree
(cc-option, as-instr, ...) run the real compiler, as they do under make. Parsing Linux takes seconds, so a
parsed tree is cached (pickled) under ${WDIMAGE_CACHE:-~/.cache/wdimage}/kconfig-parse/, keyed on the
content of every Kconfig file it read, the environment, and the toolchain binaries the macros ran.
"""

import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import pickle
import platform
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from wdimage import log
from wdimage.errors import usage_error
from wdimage.fileio import cache_dir, private_cache_dir
from wdimage.kconfig import compat as kconfig_compat
from wdimage.kconfig.compat import CompatKconfig, kconfiglib
from wdimage.models import ARCHES
from wdimage.run import run_quiet

# Bump when what the cache holds changes meaning (the compatibility layer, this module's parse).
CACHE_REVISION = 5
# The Makefile's SUBARCH mapping of `uname -m`, and its ARCH -> SRCARCH folding.
_SUBARCH = ((r"i.86|x86_64", "x86"), (r"sun4u", "sparc64"), (r"arm.*|sa110", "arm"), (r"s390x", "s390"),
            (r"ppc.*", "powerpc"), (r"mips.*", "mips"), (r"sh[234].*", "sh"), (r"aarch64.*", "arm64"),
            (r"riscv.*", "riscv"), (r"loongarch.*", "loongarch"))
_SRCARCH = {"i386": "x86", "x86_64": "x86", "sparc32": "sparc", "sparc64": "sparc", "parisc64": "parisc",
            "sh64": "sh", "tilepro": "tile", "tilegx": "tile"}
# Tools whose output the Kconfig macros depend on (their identity goes into the cache key).
_TOOL_VARIABLES = ("CC", "LD", "OBJCOPY", "NM", "AR", "PAHOLE", "RUSTC", "BINDGEN", "HOSTCC")
TRI = {0: "n", 1: "m", 2: "y"}


def host_arch() -> str:
    machine = platform.machine()
    for pattern, arch in _SUBARCH:
        if re.fullmatch(pattern, machine):
            return arch
    return machine


def srcarch(arch: str) -> str:
    return _SRCARCH.get(arch, arch)


def kernel_version(src: Path) -> str:
    """KERNELVERSION as the top-level Makefile computes it from VERSION, PATCHLEVEL, SUBLEVEL, EXTRAVERSION."""
    try:
        head = (src / "Makefile").read_text(errors="replace")[:4000]
    except OSError as e:
        raise usage_error(f"{src}: not a kernel source tree ({e.strerror}: Makefile)",
                          hint="point --kernel-src at an extracted Linux source tree") from None
    fields = dict(re.findall(r"^(VERSION|PATCHLEVEL|SUBLEVEL|EXTRAVERSION)\s*=[ \t]*(.*?)\s*$", head, re.M))
    version = fields.get("VERSION", "")
    if fields.get("PATCHLEVEL"):
        version += f".{fields['PATCHLEVEL']}"
        if fields.get("SUBLEVEL"):
            version += f".{fields['SUBLEVEL']}"
    return version + fields.get("EXTRAVERSION", "")


def cross_compile(arch: str) -> str:
    """CROSS_COMPILE for `arch`: the environment's, else none for the host's own architecture, else Debian's
    cross compiler from the architecture table (exit 2 naming its package when it is not installed): Kconfig's
    cc-option and as-instr tests must ask the compiler that will build the kernel."""
    if "CROSS_COMPILE" in os.environ:
        return os.environ["CROSS_COMPILE"]
    if srcarch(arch) == srcarch(host_arch()):
        return ""
    row = next((a for a in ARCHES.values() if srcarch(a.kernel_arch) == srcarch(arch)), None)
    if row is None:
        return ""  # an architecture wdimage has no row for: as make, the host's compiler unless CROSS_COMPILE
    if shutil.which(f"{row.cross_compile}gcc") is None:
        raise usage_error(f"--arch {arch}: no {row.cross_compile}gcc, the cross compiler Kconfig's compiler tests "
                          f"need for ARCH={arch}",
                          hint=f"apt-get install gcc-{row.cross_compile.rstrip('-')}, or set CROSS_COMPILE")
    return row.cross_compile


def _toolchain(env: dict[str, str]) -> dict[str, str]:
    cross = env["CROSS_COMPILE"]
    llvm = os.environ.get("LLVM", "") == "1"
    tools = {
        "CC": f"{cross}gcc", "LD": f"{cross}ld", "AR": f"{cross}ar", "NM": f"{cross}nm",
        "OBJCOPY": f"{cross}objcopy", "OBJDUMP": f"{cross}objdump", "READELF": f"{cross}readelf",
        "STRIP": f"{cross}strip", "HOSTCC": "gcc", "HOSTCXX": "g++",
    }
    if llvm:
        tools.update(CC="clang", LD="ld.lld", AR="llvm-ar", NM="llvm-nm", OBJCOPY="llvm-objcopy",
                     OBJDUMP="llvm-objdump", READELF="llvm-readelf", STRIP="llvm-strip",
                     HOSTCC="clang", HOSTCXX="clang++")
    # Like make, a variable given in the environment overrides the Makefile's default.
    return {name: os.environ.get(name, default) for name, default in tools.items()}


def kconfig_environment(src: Path, arch: str) -> dict[str, str]:
    """The variables the kernel Makefile exports to scripts/kconfig/conf, for `src` and `arch`."""
    env = {
        "srctree": str(src), "ARCH": arch, "SRCARCH": srcarch(arch),
        "KERNELVERSION": kernel_version(src), "CROSS_COMPILE": cross_compile(arch),
        "CLANG_FLAGS": "", "PAHOLE": os.environ.get("PAHOLE", "pahole"),
        "RUSTC": os.environ.get("RUSTC", "rustc"), "BINDGEN": os.environ.get("BINDGEN", "bindgen"),
        "HOSTRUSTC": "rustc", "RUSTC_BOOTSTRAP": "1", "USERCFLAGS": "", "USERLDFLAGS": "",
        "LLVM": os.environ.get("LLVM", ""),
    }
    env.update(_toolchain(env))
    env["CPP"] = f"{env['CC']} -E"
    out = run_quiet([*env["CC"].split(), "--version"], env={**os.environ, "LC_ALL": "C"}).stdout
    # Makefile: CC_VERSION_TEXT = $(subst $(pound),,$(shell LC_ALL=C $(CC) --version | head -n 1))
    env["CC_VERSION_TEXT"] = (out.splitlines() or [""])[0].replace("#", "")
    # Linux 6.11+ exports these two as well (older trees ignore them).
    env["RUSTC_VERSION_TEXT"] = _first_line([env["RUSTC"], "--version"]).replace("#", "")
    env["PAHOLE_VERSION"] = _first_line([str(src / "scripts" / "pahole-version.sh"), env["PAHOLE"]])
    return env


def _first_line(argv: list[str]) -> str:
    """The first line of a command's output, "" if it cannot run (as make's $(shell ...) gives)."""
    out = run_quiet(argv, timeout=60).stdout
    return (out.splitlines() or [""])[0].strip()


def kconfig_generation(src: Path) -> dict[str, bool]:
    """What this tree's scripts/kconfig does where Linux changed it (see wdimage.kconfig.compat): whether an
    int/hex symbol without a value is "0" (6.10+) rather than "", whether choices are menus (6.11+), whether
    `imply` promotes m (before 5.x), whether an out-of-range int user value is clamped rather than dropped."""
    symbol_c, confdata_c = (_read(src / "scripts" / "kconfig" / name) for name in ("symbol.c", "confdata.c"))
    return {"int_default_zero": 'newval.val = "0";' in symbol_c,
            "menu_choices": "sym_calc_choice(struct menu" in symbol_c,
            "imply_promotes_m": "sym->implied.tri == yes" in symbol_c,
            "clamp_user_ints": bool(confdata_c) and "sym_string_within_range(sym, sym->def[S_DEF_USER]"
                                                   not in confdata_c}


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Set `env` in os.environ (kconfiglib and its $(shell,...) read it) and work in a scratch directory
    (cc-option creates .tmp_$$ in the current directory, which must not be the user's tree)."""
    saved = dict(os.environ)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="wdimage-kconfig-") as scratch:
        os.environ.update(env)
        os.chdir(scratch)
        try:
            yield
        finally:
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(saved)


def _cache_dir() -> Path:
    """The parse cache: pickles, loaded back only from a directory nobody else can write (created 0700)."""
    return private_cache_dir(cache_dir() / "kconfig-parse")


def _tool_identity(env: dict[str, str]) -> dict[str, str]:
    ident = {}
    for var in _TOOL_VARIABLES:
        path = shutil.which(env.get(var, "").split(" ")[0]) if env.get(var) else None
        ident[var] = f"{path}:{os.stat(path).st_mtime_ns}" if path else "-"
    return ident


def _cache_file(src: Path, env: dict[str, str]) -> Path:
    key = json.dumps({"rev": CACHE_REVISION, "kconfiglib": kconfig_compat.PINNED_SHA256,
                      "python": sys.version_info[:2], "src": str(src), "env": env,
                      "tools": _tool_identity(env)}, sort_keys=True)
    return _cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pickle"


def _files_digest(src: Path, names: list[str]) -> str | None:
    """SHA-256 over the content of the Kconfig files a parse read (None if one is gone)."""
    digest = hashlib.sha256()
    for name in names:
        try:
            digest.update(name.encode() + b"\0" + (src / name).read_bytes() + b"\0")
        except OSError:
            return None
    return digest.hexdigest()


def _deep(fn, *args):
    """Run `fn` in a thread with a deep stack: pickling kconfiglib's linked menu tree recurses deeply."""
    result: list = []
    errors: list = []

    def target():
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(1_000_000)
        gc_was_enabled = gc.isenabled()
        gc.disable()  # a million fresh objects would trigger collections for nothing: 3x slower
        try:
            result.append(fn(*args))
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)
        finally:
            sys.setrecursionlimit(limit)
            if gc_was_enabled:
                gc.enable()

    old_size = threading.stack_size(512 * 1024 * 1024)
    try:
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(old_size)
    if errors:
        raise errors[0]
    return result[0]


def _load_cached(path: Path, src: Path):
    try:
        with path.open("rb") as f:
            header = pickle.load(f)
            if _files_digest(src, header["files"]) != header["digest"]:
                return None
            return _deep(pickle.load, f)
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, AttributeError):
        return None


def _store_cached(path: Path, src: Path, kconf) -> None:
    names = sorted(set(kconf.kconfig_filenames))
    header = {"files": names, "digest": _files_digest(src, names)}
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            pickle.dump(header, f, protocol=pickle.HIGHEST_PROTOCOL)
            _deep(pickle.dump, kconf, f, pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    except (OSError, pickle.PicklingError, RecursionError) as e:
        tmp.unlink(missing_ok=True)
        log.info(f"(parse cache not written: {e})")
    except BaseException:  # interrupted: no half-written pickle left behind
        tmp.unlink(missing_ok=True)
        raise


def _parse(src: Path, env: dict[str, str]):
    with _environment(env):
        try:
            kconf = CompatKconfig("Kconfig", warn_to_stderr=False, **kconfig_generation(src))
        except kconfiglib.KconfigError as e:
            raise usage_error(f"{src}: the Kconfig tree does not parse: {e}".strip(),
                              hint="is --kernel-src an extracted Linux source tree for --arch?") from None
        except OSError as e:
            raise usage_error(f"{src}: cannot read the Kconfig tree: {e}") from None
    kconf._readline = None  # the last file's reader: parsing is over, and it would not pickle
    return kconf


def parse_tree(src: Path, arch: str | None = None, *, use_cache: bool = True) -> "KconfigTree":
    """Parse the Kconfig tree of the kernel source `src` for `arch` (default: the host's), from the cache
    when nothing it depends on changed."""
    src = src.resolve()
    if not (src / "Kconfig").is_file():
        raise usage_error(f"{src}: no Kconfig file here; --kernel-src must name a Linux source tree",
                          hint="e.g. --kernel-src /usr/src/linux-source-6.1 (tar xf the linux-source package)")
    arch = arch or os.environ.get("ARCH") or host_arch()
    if not (src / "arch" / srcarch(arch) / "Kconfig").is_file():
        raise usage_error(f"--arch {arch}: {src}/arch/{srcarch(arch)}/Kconfig does not exist")
    env = kconfig_environment(src, arch)
    cache = _cache_file(src, env) if use_cache else None
    kconf = _load_cached(cache, src) if cache else None
    if kconf is None:
        with log.step(f"Parsing the Kconfig tree of {src} (ARCH={arch})"):
            kconf = _parse(src, env)
        if cache:
            _store_cached(cache, src, kconf)
    return KconfigTree(src, arch, env, kconf)


def _selector(term) -> str:
    """The selecting symbol of a rev_dep term: kconfiglib builds each as `SELECTOR && condition`."""
    while term.__class__ is tuple and term[0] is kconfiglib.AND:
        term = term[1]
    return term.name if term.__class__ is not tuple else kconfiglib.expr_str(term)


@dataclasses.dataclass(frozen=True)
class SymbolFacts:
    """What menuconfig's info screen says about a symbol, with the current config loaded."""

    name: str
    type: str  # bool, tristate, string, int, hex, unknown
    value: str
    visibility: str  # n, m, y: the upper bound a user value can reach
    assignable: tuple[str, ...]  # values a user can set now
    has_prompt: bool
    depends_on: tuple[tuple[str, str], ...]  # (each term of `depends on`, its value)
    selected_by: tuple[tuple[str, str, str], ...]  # (selecting symbol, whole `select` condition, its value)
    defined_at: tuple[str, ...]  # file:line of each definition


@dataclasses.dataclass
class KconfigTree:
    """A parsed Kconfig tree and the config loaded into it."""

    src: Path
    arch: str
    env: dict[str, str]
    kconf: object  # kconfiglib.Kconfig (kept opaque outside this module)

    @property
    def kernel_version(self) -> str:
        return self.env["KERNELVERSION"]

    def symbol_names(self) -> list[str]:
        return [name for name, sym in self.kconf.syms.items() if sym.nodes]

    def has_symbol(self, name: str) -> bool:
        sym = self.kconf.syms.get(name)
        return bool(sym and sym.nodes)

    def type_of(self, name: str) -> str:
        return kconfiglib.TYPE_TO_STR[self.kconf.syms[name].orig_type]

    def value(self, name: str) -> str:
        sym = self.kconf.syms.get(name)
        return sym.str_value if sym is not None else ""

    def modules_enabled(self) -> bool:
        return self.kconf.modules.tri_value == 2

    def load_config_text(self, text: str, origin: str) -> list[str]:
        """Load a .config from `text` (as `make olddefconfig` reads KCONFIG_CONFIG); returns the warnings."""
        with tempfile.NamedTemporaryFile("w", suffix=".config", prefix="wdimage-") as f:
            f.write(text)
            f.flush()
            del self.kconf.warnings[:]
            with _environment(self.env):
                self.kconf.load_config(f.name)
        return [w.replace(f.name, origin) for w in self.kconf.warnings]

    def config_text(self) -> str:
        """The resolved config, written as scripts/kconfig/conf writes .config (header included)."""
        header = f"#\n# Automatically generated file; DO NOT EDIT.\n# {self.kconf.mainmenu_text}\n#\n"
        with tempfile.TemporaryDirectory(prefix="wdimage-") as tmp:
            out = Path(tmp) / "config"
            with _environment(self.env):
                self.kconf.write_config(str(out), header=header, save_old=False)
            return out.read_text()

    def facts(self, name: str) -> SymbolFacts:
        sym = self.kconf.syms[name]
        terms = kconfiglib.split_expr(sym.direct_dep, kconfiglib.AND)
        depends = tuple((kconfiglib.expr_str(t), TRI[kconfiglib.expr_value(t)]) for t in terms
                        if t is not self.kconf.y)
        selectors = tuple((_selector(t), kconfiglib.expr_str(t), TRI[kconfiglib.expr_value(t)])
                          for t in kconfiglib.split_expr(sym.rev_dep, kconfiglib.OR) if t is not self.kconf.n)
        return SymbolFacts(
            name=name, type=kconfiglib.TYPE_TO_STR[sym.orig_type], value=sym.str_value,
            visibility=TRI[sym.visibility], assignable=tuple(TRI[v] for v in sym.assignable),
            has_prompt=any(node.prompt for node in sym.nodes), depends_on=depends, selected_by=selectors,
            defined_at=tuple(f"{node.filename}:{node.linenr}" for node in sym.nodes))
