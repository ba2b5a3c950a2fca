"""Which accelerator a drill boots under: KVM only where a probe boot of this very kernel gets through its own init
under it, TCG otherwise (DESIGN.md: a /dev/kvm that cannot boot a guest, as under nested virtualisation, hangs
silently).

The probe costs up to 20 s, and a console that stops changing for 8 s ends it sooner (a KVM boot's kernel writes
to the console without pauses that long). Its answer is kept in ${WDIMAGE_CACHE}/accel/, one file per key, for a
week: the key is everything the answer depends on (the host's kernel and CPU, the QEMU binary, the guest's kernel
or disk, the machine, the command line), so a new kernel, QEMU or image probes again. WDIMAGE_ACCEL=kvm|tcg skips
both the probe and the cache. known() answers without a boot where it can, so that a caller can start the TCG
boot beside probe() (the drill does: wdimage.drill.runner).
"""

import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

from wdimage.errors import WdimageError
from wdimage.fileio import cache_dir, private_cache_dir, write_atomically
from wdimage.models import arch_from_uname, arch_info
from wdimage.vm.launch import LaunchSpec
from wdimage.vm.process import probe_boot

PROBE_SECONDS = 20
QUIET_SECONDS = 8  # a console unchanged this long under KVM: the guest hangs (here: SeaBIOS's banner, then nothing)
KEPT_SECONDS = 7 * 24 * 3600
KEY_VERSION = 1  # bump when the probe itself changes what it proves

_answers: dict[str, tuple[str, str]] = {}  # this process's answers, by key


def choose_accel(spec: LaunchSpec, workdir: Path) -> tuple[str, str]:
    """("kvm"|"tcg", why)."""
    return known(spec) or probe(spec, workdir)


def known(spec: LaunchSpec) -> tuple[str, str] | None:
    """The answer where no boot is needed to know it (forced, a foreign guest, no /dev/kvm, a kept answer);
    None when only the probe can tell, so that a caller may start something else beside it."""
    forced = os.environ.get("WDIMAGE_ACCEL", "")
    if forced:
        if forced not in ("kvm", "tcg"):
            raise WdimageError(f"WDIMAGE_ACCEL={forced!r}: expected kvm or tcg")
        return forced, f"WDIMAGE_ACCEL={forced}"
    host = platform.machine()
    if arch_from_uname(host) is not spec.arch:
        return "tcg", f"{spec.arch} guest on this {host} host: KVM runs only the host's architecture"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "no usable /dev/kvm"
    key = probe_key(spec)
    if key not in _answers and (kept := _kept(key)):
        _answers[key] = kept
    return _answers.get(key)


def probe(spec: LaunchSpec, workdir: Path) -> tuple[str, str]:
    """Boot the guest's kernel under KVM (up to PROBE_SECONDS) and keep the answer."""
    key = probe_key(spec)
    if key not in _answers:
        _answers[key] = _probe_and_keep(spec, workdir, key)
    return _answers[key]


def probe_key(spec: LaunchSpec) -> str:
    """A digest of what the probe's answer depends on; the per-run paths (sockets, console) are not in it."""
    emulator = arch_info(spec.arch).qemu_system
    qemu = shutil.which(emulator) or emulator
    parts = {
        "version": KEY_VERSION,
        "host": [platform.release(), platform.version(), _cpu_identity()],
        "qemu": [qemu, *_stat_identity(Path(qemu))],
        "guest": _digest(spec.kernel) if spec.kernel else [str(spec.image.resolve()), *_stat_identity(spec.image)],
        "launch": [str(spec.arch), spec.machine, spec.cmdline or "", str(spec.model)],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _path(key: str) -> Path:
    """Where the answer for `key` is kept: in a directory only this user can write (WdimageError otherwise)."""
    return private_cache_dir(cache_dir() / "accel") / f"{key}.json"


def _kept(key: str) -> tuple[str, str] | None:
    try:
        path = _path(key)
        kept = json.loads(path.read_text())
        accel, why, when = kept["accel"], kept["why"], float(kept["when"])
    except (OSError, ValueError, KeyError, TypeError, WdimageError):
        return None
    if accel not in ("kvm", "tcg") or not 0 <= time.time() - when < KEPT_SECONDS:
        return None
    day = time.strftime("%Y-%m-%d %H:%M", time.localtime(when))
    return accel, f"{why}; kept from {day} in {path} (WDIMAGE_ACCEL=kvm|tcg overrides)"


def _probe_and_keep(spec: LaunchSpec, workdir: Path, key: str) -> tuple[str, str]:
    booted, why = probe_boot(spec, workdir, PROBE_SECONDS, accel="kvm", quiet_seconds=QUIET_SECONDS)
    answer = ("kvm" if booted else "tcg"), f"KVM probe: {why}"
    try:
        write_atomically(_path(key), json.dumps({"accel": answer[0], "why": answer[1], "when": time.time()}),
                         mode=0o600)
    except (OSError, WdimageError):
        pass  # the answer stands for this run; the next one probes again
    return answer


def _cpu_identity() -> str:
    """The CPU's model and flags (what KVM can offer a guest changes with them, and with the hypervisor below)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    wanted = ("model name", "flags", "microcode", "vendor_id")
    return "|".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _stat_identity(path: Path) -> list[int]:
    try:
        st = path.stat()
    except OSError:
        return [0, 0]
    return [st.st_size, st.st_mtime_ns]


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
