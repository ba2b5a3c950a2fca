"""Every file wdimage writes from a template (the only jinja2 module): watchdog.conf, the launch stub, libvirt XML.

Values reach these files only after validation (wdimage.image.build.BuildSettings); on top of that, the launch
stub quotes every QEMU argument for the shell, and the XML template is autoescaped.
"""

import dataclasses
import enum
import re
import shlex
from pathlib import Path

import jinja2

from wdimage import __version__
from wdimage.models import Action, Arch, Model, action_info, arch_info, info
from wdimage.vm.launch import LaunchSpec, cpu_is_host, cpu_model, machine_type, qemu_argv

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("wdimage.image", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("xml.j2",), default_for_string=False),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

# Placeholders for the two directories the launch stub only knows when it runs.
_HERE = "@WDIMAGE_HERE@"
_RUNDIR = "@WDIMAGE_RUNDIR@"

class LibvirtType(enum.StrEnum):
    """`wdimage build --libvirt-type`: the libvirt domain's type."""

    KVM = "kvm"
    QEMU = "qemu"  # TCG


# libvirt's domain type -> the accelerator of the same VM under plain QEMU.
LIBVIRT_TYPES = {LibvirtType.KVM: "kvm", LibvirtType.QEMU: "tcg"}
# What libvirt takes as a domain name and wdimage writes (build's --name is narrower still).
LIBVIRT_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


@dataclasses.dataclass(frozen=True)
class WatchdogConf:
    model: Model
    timeout: int
    ping: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    max_load_1: int | None = None
    min_memory: int | None = None
    pidfiles: tuple[str, ...] = ()
    test_binary: str | None = None  # paths in the guest
    repair_binary: str | None = None
    retry_timeout: int | None = None  # None: the daemon's default


@dataclasses.dataclass(frozen=True)
class GuestFiles:
    """What the launch stub and the libvirt XML describe: file names inside the output directory."""

    name: str
    model: Model
    action: Action
    image: str
    kernel: str | None
    initrd: str | None
    cmdline: str | None
    agent: bool
    memory_mb: int = 1024
    cpus: int = 2
    arch: Arch = Arch.X86_64


def render_watchdog_conf(conf: WatchdogConf) -> str:
    # The daemon must feed the device well within its timeout.
    interval = max(1, min(5, conf.timeout // 3))
    return _ENV.get_template("watchdog.conf.j2").render(
        version=__version__, model=conf.model, timeout=conf.timeout, interval=interval,
        ping=conf.ping, interfaces=conf.interfaces, max_load_1=conf.max_load_1, min_memory=conf.min_memory,
        pidfiles=conf.pidfiles, test_binary=conf.test_binary, repair_binary=conf.repair_binary,
        retry_timeout=conf.retry_timeout)


def launch_spec(guest: GuestFiles, accel: str, here: str = _HERE) -> LaunchSpec:
    """The one description of the VM: the launch stub's QEMU command and the libvirt domain both come from it.
    File names are resolved under `here` (the stub's placeholder, or the published directory for libvirt)."""
    def path(file: str | None) -> Path | None:
        return Path(f"{here}/{file}") if file else None

    return LaunchSpec(
        model=guest.model, action=guest.action, image=path(guest.image), kernel=path(guest.kernel),
        initrd=path(guest.initrd), cmdline=guest.cmdline, memory_mb=guest.memory_mb, cpus=guest.cpus,
        accel=accel, arch=guest.arch, cache="writeback", qmp_socket=Path(f"{_RUNDIR}/qmp.sock"),
        qga_socket=Path(f"{_RUNDIR}/qga.sock") if guest.agent else None)


def shell_word(arg: str) -> str:
    """One QEMU argument as a shell word; the directory placeholders become "$here" / "$rundir"."""
    if _HERE not in arg and _RUNDIR not in arg:
        return shlex.quote(arg)
    escaped = "".join("\\" + c if c in '"$`\\' else c for c in arg)
    return '"' + escaped.replace(_HERE, "${here}").replace(_RUNDIR, "${rundir}") + '"'


def _option_lines(argv: list[str]) -> list[str]:
    """The command as shell lines: the binary, then each option with its value on one line."""
    lines = [shell_word(argv[0])]
    for arg in argv[1:]:
        if not arg.startswith("-") and lines[-1].startswith("-") and " " not in lines[-1]:
            lines[-1] += " " + shell_word(arg)
        else:
            lines.append(shell_word(arg))
    return lines


def render_launch_stub(guest: GuestFiles) -> str:
    def line(accel: str) -> str:
        return " \\\n            ".join(_option_lines(qemu_argv(launch_spec(guest, accel))))

    return _ENV.get_template("run.sh.j2").render(
        version=__version__, name=guest.name, model=guest.model, action=guest.action,
        tcg_argv=line("tcg"), kvm_argv=line("kvm"))


def render_libvirt_xml(guest: GuestFiles, directory: Path, libvirt_type: str = "kvm") -> str:
    """A libvirt domain for the published directory (libvirt wants absolute paths), from the same LaunchSpec
    as the launch stub: `libvirt_type` kvm (the default for a libvirt host) or qemu (TCG)."""
    return domain_xml(launch_spec(guest, LIBVIRT_TYPES[libvirt_type], here=str(directory)), guest.name)


def domain_xml(spec: LaunchSpec, name: str) -> str:
    """The libvirt form of `spec`, for libvirt >= 9.0 (Debian 12). The emulator is left to libvirt (RHEL's is
    /usr/libexec/qemu-kvm); no comment carries a value ('--' would end it): the description element does."""
    if not LIBVIRT_NAME_RE.fullmatch(name):
        raise ValueError(f"domain name {name!r} is not one libvirt accepts here")
    model = info(spec.model)
    for path in (spec.image, spec.kernel, spec.initrd):
        if path is not None and not path.is_absolute():
            raise ValueError(f"libvirt needs absolute paths: {path}")
    return _ENV.get_template("domain.xml.j2").render(
        version=__version__, name=name, spec=spec, model=model, machine=machine_type(spec), cpu_host=cpu_is_host(spec),
        cpu=cpu_model(spec), arch=arch_info(spec.arch),
        domain_type="kvm" if spec.accel == "kvm" else "qemu", agent=spec.qga_socket is not None,
        libvirt_action=action_info(spec.action).libvirt)
