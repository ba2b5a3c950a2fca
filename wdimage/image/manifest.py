"""manifest.json, the record of a `wdimage build` output directory, as a typed Manifest.

One writer (Manifest.to_json / write: wdimage.image.assemble) and one reader (read_manifest), which every
consumer uses: the drill (wdimage.drill.build_output), the output-directory check (wdimage.image.outputs),
`wdimage diff`, the SBOM and `wdimage index`. The JSON keys and their meaning are those of schema 1 (other
tooling reads them): Manifest.to_json writes them in the order the build always has.

Reading validates what is there (a usage error, exit 2, names the file and the key: "key 'timeout': expected
int, found '15'") and leaves out what is not: a key that a reader needs is its own check (the drill needs
the image file, an agent, ...). Keys a newer wdimage may add are kept (`extra`) and written back.
"""

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from wdimage.errors import usage_error
from wdimage.fileio import write_atomically
from wdimage.image import health as health_
from wdimage.jsonfile import MANIFEST
from wdimage.models import Action, Arch, Model, info

SCHEMA = MANIFEST.schema
FILE = "manifest.json"
BOOTS = ("direct", "disk")  # wdimage.image.dib.Layout's values
HINT = "give the output directory of 'wdimage build'"


# --- the parts -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Breaks:
    """How the drill makes the test binary fail: plainly (and repairably), and so that its repair fails too."""

    test: str | None = None
    test_unrepairable: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in (("test", self.test), ("test_unrepairable", self.test_unrepairable))
                if v is not None}


@dataclasses.dataclass(frozen=True)
class HealthRecord:
    """manifest.json's `health`: the daemon's health tests as configured in the image (paths in the guest),
    its retry settings as they apply (defaults stated), and how the drill breaks what a test watches."""

    ping: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    max_load_1: int | None = None
    min_memory: int | None = None  # pages (4 KiB)
    pidfiles: tuple[str, ...] = ()
    test_binary: str | None = None  # in the guest
    repair_binary: str | None = None
    retry_timeout: int = health_.DEFAULT_RETRY_TIMEOUT
    repair_maximum: int = health_.DEFAULT_REPAIR_MAXIMUM
    sigterm_delay: int = health_.DEFAULT_SIGTERM_DELAY
    example: bool = False  # wdimage's example service, test and repair binaries
    breaks: Breaks = Breaks()  # JSON key "break"

    def to_json(self) -> dict:
        return {"ping": list(self.ping), "interfaces": list(self.interfaces), "max_load_1": self.max_load_1,
                "min_memory": self.min_memory, "pidfiles": list(self.pidfiles), "test_binary": self.test_binary,
                "repair_binary": self.repair_binary, "retry_timeout": self.retry_timeout,
                "repair_maximum": self.repair_maximum, "sigterm_delay": self.sigterm_delay,
                "example": self.example, "break": self.breaks.to_json()}


def health_record(health: health_.HealthSettings) -> HealthRecord:
    """What the manifest records of the build's health settings."""
    breaks = Breaks()
    if health.example:
        breaks = Breaks(health_.EXAMPLE_BREAK, health_.EXAMPLE_BREAK_UNREPAIRABLE)
    if health.test_break:
        breaks = dataclasses.replace(breaks, test=health.test_break)
    return HealthRecord(
        ping=health.ping, interfaces=health.interfaces, max_load_1=health.max_load_1,
        min_memory=health.min_memory, pidfiles=health.pidfiles,
        test_binary=health.guest_path(health.test_binary), repair_binary=health.guest_path(health.repair_binary),
        retry_timeout=health.retry_timeout if health.retry_timeout is not None else health_.DEFAULT_RETRY_TIMEOUT,
        example=health.example, breaks=breaks)


@dataclasses.dataclass(frozen=True)
class Files:
    """The output directory's files, by role: plain names inside the directory (None: not in this build)."""

    image: str | None = None
    kernel_config: str | None = None
    kernel: str | None = None  # direct boot only
    initrd: str | None = None
    launch_stub: str | None = None
    libvirt_xml: str | None = None
    kubevirt: str | None = None  # the KubeVirt VirtualMachine (wdimage.image.platforms)
    proxmox: str | None = None  # the Proxmox VE import script
    containerdisk: str | None = None  # --containerdisk: the image as a KubeVirt containerDisk (OCI archive)
    nocloud_seed: str | None = None  # a cloud-init NoCloud seed the drill attaches (a stock-image stand-in's)
    sbom: str | None = None
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)  # roles this wdimage does not know

    def to_json(self) -> dict:
        known = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**{role: name for role, name in known.items() if name is not None}, **self.extra}

    def names(self) -> list[str]:
        return list(self.to_json().values())


@dataclasses.dataclass(frozen=True)
class Package:
    """A package the watchdog setup depends on (manifest `packages`, by role)."""

    name: str
    version: str

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version}


@dataclasses.dataclass(frozen=True)
class InstalledPackage:
    name: str
    version: str = ""
    arch: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "arch": self.arch}


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    """manifest `build`: the tools and the time of the build."""

    wdimage_version: str | None = None
    dib_version: str | None = None
    started: str | None = None  # ISO 8601, UTC
    seconds: float | None = None
    layout: str | None = None
    layout_option: str | None = None  # --layout as given (auto, direct, disk)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# --- the manifest ----------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Manifest:
    """A build output directory's manifest.json. None: the key is absent (a manifest from a test, or trimmed)."""

    name: str | None = None
    distro: str | None = None
    release: str | None = None
    model: Model | None = None
    action: Action | None = None
    timeout: int | None = None  # watchdog-timeout, seconds
    boot: str | None = None  # one of BOOTS
    machine: str | None = None  # QEMU machine type
    arch: Arch | None = None  # the guest's architecture; absent (x86_64) in manifests of x86 builds
    kernel_cmdline: str | None = None  # direct boot's
    kernel_release: str | None = None
    agent: bool | None = None  # the QEMU guest agent is installed
    drill_agent: bool | None = None  # CentOS: its policy allows guest-exec
    init_system: str | None = None
    health: HealthRecord | None = None
    elements: tuple[str, ...] | None = None  # DIB's
    packages: Mapping[str, Package] | None = None  # by role: kernel, watchdog, qemu-guest-agent, modules
    installed_packages: tuple[InstalledPackage, ...] | None = None
    kernel_config_check: dict | None = None  # wdimage.kconfig.config's report, fragment paths project-relative
    kernel_modules: dict | None = None  # wdimage.image.kmodules' record
    libvirt_type: str | None = None  # JSON: libvirt.type
    openstack_watchdog_action: str | None = None  # JSON: openstack.hw_watchdog_action
    # platform -> {"file": NAME} or {"left_out": WHY} (wdimage.image.platforms); absent in older manifests
    platforms: Mapping[str, Mapping[str, str]] | None = None
    files: Files | None = None
    checksums: Mapping[str, str] | None = None  # file name -> SHA-256
    kernel_source: dict | None = None  # a kernel compiled from source (kernel_build.KernelBuild.to_manifest)
    build: BuildInfo | None = None
    extra: Mapping[str, object] = dataclasses.field(default_factory=dict)  # keys this wdimage does not know
    schema: int = SCHEMA

    def to_json(self) -> dict:
        """The JSON object, keys in the order builds have always written them; kernel_source only when set."""
        def part(value):
            return value.to_json() if value is not None else None

        data = {
            "schema": self.schema, "name": self.name, "distro": self.distro, "release": self.release,
            "model": self.model, "action": self.action, "timeout": self.timeout, "boot": self.boot,
            "machine": self.machine, **({"arch": self.arch} if self.arch not in (None, Arch.X86_64) else {}),
            "kernel_cmdline": self.kernel_cmdline, "kernel_release": self.kernel_release,
            "agent": self.agent, "drill_agent": self.drill_agent, "init_system": self.init_system,
            "health": part(self.health),
            "elements": list(self.elements) if self.elements is not None else None,
            "packages": {role: p.to_json() for role, p in self.packages.items()} if self.packages is not None
            else None,
            "installed_packages": [p.to_json() for p in self.installed_packages]
            if self.installed_packages is not None else None,
            "kernel_config_check": self.kernel_config_check, "kernel_modules": self.kernel_modules,
            "libvirt": {"type": self.libvirt_type},
            "openstack": {"hw_watchdog_action": self.openstack_watchdog_action},
            **({"platforms": {k: dict(v) for k, v in self.platforms.items()}} if self.platforms is not None else {}),
            "files": part(self.files),
            "checksums": dict(self.checksums) if self.checksums is not None else None,
            **({"kernel_source": self.kernel_source} if self.kernel_source is not None else {}),
            "build": part(self.build),
        }
        data = {k: str(v) if isinstance(v, (Model, Action, Arch)) else v for k, v in data.items()}
        return {**data, **self.extra}

    def text(self) -> str:
        """manifest.json's content."""
        return json.dumps(self.to_json(), indent=2) + "\n"

    def write(self, directory: Path) -> str:
        """Write DIR/manifest.json (atomically); returns the text written."""
        text = self.text()
        write_atomically(Path(directory) / FILE, text)
        return text

    @property
    def direct(self) -> bool:
        return self.boot == "direct"


def manifest_file(path: Path) -> Path:
    """A build output directory's manifest.json, or `path` itself when it names the file."""
    path = Path(path)
    return path / FILE if path.is_dir() else path


def read_manifest_json(path: Path, hint: str = HINT) -> tuple[dict, Path]:
    """The JSON object of the manifest at `path` (a directory or the file), validated as read_manifest does,
    and the file it came from."""
    file = manifest_file(path)
    data = MANIFEST.read(file, hint)
    from_json(data, file)
    return data, file


def read_manifest(path: Path, hint: str = HINT) -> Manifest:
    """The Manifest at `path` (a build output directory or its manifest.json); a usage error (exit 2) names
    the file, and the key at fault."""
    file = manifest_file(path)
    return from_json(MANIFEST.read(file, hint), file)


# --- reading ---------------------------------------------------------------------------------------------------

_TOP = ("schema", "name", "distro", "release", "model", "action", "timeout", "boot", "machine", "arch",
        "kernel_cmdline", "kernel_release", "agent", "drill_agent", "init_system", "health", "elements", "packages",
        "installed_packages", "kernel_config_check", "kernel_modules", "libvirt", "openstack", "platforms", "files",
        "checksums",
        "kernel_source", "build")


class _Reader:
    """Typed values out of one JSON object, each error naming the file and the dotted key."""

    def __init__(self, file: Path, data: dict, prefix: str = ""):
        self.file, self.data, self.prefix = file, data, prefix

    def error(self, key: str, what: str):
        return usage_error(f"{self.file}: key {self.prefix + key!r}: {what}")

    def get(self, key: str, kind: type | tuple[type, ...]):
        """The value (None when absent or null), of type `kind` (bool is no int)."""
        value = self.data.get(key)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if value is None:
            return None
        if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
            raise self.error(key, f"expected {kinds[0].__name__}, found {value!r}")
        return value

    def choice(self, key: str, enum_type):
        value = self.get(key, str)
        if value is None:
            return None
        try:
            return enum_type(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not one of {', '.join(enum_type)}") from None

    def strings(self, key: str) -> tuple[str, ...] | None:
        items = self.get(key, list)
        if items is None:
            return None
        if not all(isinstance(item, str) for item in items):
            raise self.error(key, f"expected a list of strings, found {items!r}")
        return tuple(items)

    def nested(self, key: str) -> "_Reader | None":
        value = self.get(key, dict)
        return None if value is None else _Reader(self.file, value, f"{self.prefix}{key}.")


def from_json(data: dict, file: Path) -> Manifest:
    """The Manifest of a manifest.json object read from `file` (named in errors)."""
    r = _Reader(file, data)
    model, timeout = r.choice("model", Model), r.get("timeout", int)
    if model is not None and timeout is not None:
        low, high = info(model).timeout_range
        if not low <= timeout <= high:
            raise r.error("timeout", f"{timeout} is outside {model}'s range {low}..{high}")
    boot = r.get("boot", str)
    if boot is not None and boot not in BOOTS:
        raise r.error("boot", f"{boot!r} is not 'direct' or 'disk'")
    release = data.get("release")
    libvirt, openstack = r.nested("libvirt"), r.nested("openstack")
    return Manifest(
        schema=data.get("schema", SCHEMA), name=r.get("name", str), distro=r.get("distro", str),
        release=None if release is None else str(release), model=model, action=r.choice("action", Action),
        timeout=timeout, boot=boot, machine=r.get("machine", str), arch=r.choice("arch", Arch),
        kernel_cmdline=r.get("kernel_cmdline", str),
        kernel_release=r.get("kernel_release", str), agent=r.get("agent", bool),
        drill_agent=r.get("drill_agent", bool), init_system=r.get("init_system", str),
        health=_health(r.nested("health")), elements=r.strings("elements"), packages=_packages(r),
        installed_packages=_installed(r), kernel_config_check=r.get("kernel_config_check", dict),
        kernel_modules=r.get("kernel_modules", dict),
        libvirt_type=libvirt.get("type", str) if libvirt else None,
        openstack_watchdog_action=openstack.get("hw_watchdog_action", str) if openstack else None,
        platforms=_platforms(r.nested("platforms")), files=_files(r.nested("files")), checksums=_checksums(r),
        kernel_source=r.get("kernel_source", dict),
        build=_build(r.nested("build")), extra={k: v for k, v in data.items() if k not in _TOP})


def _health(r: _Reader | None) -> HealthRecord | None:
    if r is None:
        return None
    breaks = r.nested("break")
    defaults = HealthRecord()

    def number(key: str, default: int | None) -> int | None:
        value = r.get(key, int)
        return default if value is None else value

    return HealthRecord(
        ping=r.strings("ping") or (), interfaces=r.strings("interfaces") or (),
        max_load_1=r.get("max_load_1", int), min_memory=r.get("min_memory", int),
        pidfiles=r.strings("pidfiles") or (), test_binary=r.get("test_binary", str),
        repair_binary=r.get("repair_binary", str), retry_timeout=number("retry_timeout", defaults.retry_timeout),
        repair_maximum=number("repair_maximum", defaults.repair_maximum),
        sigterm_delay=number("sigterm_delay", defaults.sigterm_delay), example=bool(r.get("example", bool)),
        breaks=Breaks(breaks.get("test", str), breaks.get("test_unrepairable", str)) if breaks else Breaks())


def _platforms(r: _Reader | None) -> dict[str, dict[str, str]] | None:
    if r is None:
        return None
    result = {}
    for platform in r.data:
        entry = r.nested(platform)
        if entry is None or len(entry.data) != 1 or not isinstance(entry.get("file", str) or
                                                                   entry.get("left_out", str), str):
            raise r.error(platform, 'expected {"file": NAME} or {"left_out": WHY}')
        result[platform] = dict(entry.data)
    return result


def _files(r: _Reader | None) -> Files | None:
    if r is None:
        return None
    names = {}
    for role, name in r.data.items():
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise r.error(role, f"expected a file name inside the output directory, found {name!r}")
        names[role] = name
    known = {f.name for f in dataclasses.fields(Files)} - {"extra"}
    return Files(**{k: v for k, v in names.items() if k in known},
                 extra={k: v for k, v in names.items() if k not in known})


def _packages(r: _Reader) -> dict[str, Package] | None:
    packages = r.nested("packages")
    if packages is None:
        return None
    result = {}
    for role in packages.data:
        p = packages.nested(role)
        name, version = p.get("name", str), p.get("version", str)
        if name is None:
            raise packages.error(f"{role}.name", "expected str, found None")
        result[role] = Package(name, version or "")
    return result


def _installed(r: _Reader) -> tuple[InstalledPackage, ...] | None:
    rows = r.get("installed_packages", list)
    if rows is None:
        return None
    result = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise r.error(f"installed_packages[{i}]", f"expected {{name, version, arch}}, found {row!r}")
        p = _Reader(r.file, row, f"installed_packages[{i}].")
        result.append(InstalledPackage(row["name"], p.get("version", str) or "", p.get("arch", str) or ""))
    return tuple(result)


def _checksums(r: _Reader) -> dict[str, str] | None:
    sums = r.get("checksums", dict)
    if sums is not None and not all(isinstance(v, str) for v in sums.values()):
        raise r.error("checksums", "expected file name -> SHA-256 (hex text)")
    return sums


def _build(r: _Reader | None) -> BuildInfo | None:
    if r is None:
        return None
    return BuildInfo(wdimage_version=r.get("wdimage_version", str), dib_version=r.get("dib_version", str),
                     started=r.get("started", str), seconds=r.get("seconds", (float, int)),
                     layout=r.get("layout", str), layout_option=r.get("layout_option", str))
