"""Every file wdimage writes from a template (the only jinja2 module): watchdog.conf, the launch stub, libvirt XML.

Values reach these files only after validation (wdimage.build.BuildSettings); on top of that, the launch
stub quotes every QEMU argument for the shell, and the XML template is autoescaped.
"""

import dataclasses
import shlex
from pathlib import Path

import jinja2

from wdimage import __version__
from wdimage.launch import LaunchSpec, qemu_argv
from wdimage.models import Action, Model, info

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("wdimage", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("xml.j2",), default_for_string=False),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)

# Placeholders for the two directories the launch stub only knows when it runs.
_HERE = "@WDIMAGE_HERE@"
_RUNDIR = "@WDIMAGE_RUNDIR@"

# QEMU's `-action watchdog=` values -> libvirt's <watchdog action=> (no libvirt "debug") and
# OpenStack's hw_watchdog_action image property (disabled|reset|poweroff|pause|none).
LIBVIRT_ACTIONS = {Action.RESET: "reset", Action.SHUTDOWN: "shutdown", Action.POWEROFF: "poweroff",
                   Action.PAUSE: "pause", Action.NONE: "none", Action.INJECT_NMI: "inject-nmi"}
OPENSTACK_ACTIONS = {Action.RESET: "reset", Action.SHUTDOWN: "poweroff", Action.POWEROFF: "poweroff",
                     Action.PAUSE: "pause", Action.NONE: "none"}


@dataclasses.dataclass(frozen=True)
class WatchdogConf:
    model: Model
    timeout: int
    ping: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    max_load_1: int | None = None


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


def render_watchdog_conf(conf: WatchdogConf) -> str:
    # The daemon must feed the device well within its timeout.
    interval = max(1, min(5, conf.timeout // 3))
    return _ENV.get_template("watchdog.conf.j2").render(
        version=__version__, model=conf.model, timeout=conf.timeout, interval=interval,
        ping=conf.ping, interfaces=conf.interfaces, max_load_1=conf.max_load_1)


def _launch_spec(guest: GuestFiles, accel: str) -> LaunchSpec:
    def here(file: str | None) -> Path | None:
        return Path(f"{_HERE}/{file}") if file else None

    return LaunchSpec(
        model=guest.model, action=guest.action, image=here(guest.image), kernel=here(guest.kernel),
        initrd=here(guest.initrd), cmdline=guest.cmdline, memory_mb=guest.memory_mb, cpus=guest.cpus,
        accel=accel, cache="writeback", qmp_socket=Path(f"{_RUNDIR}/qmp.sock"),
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
        return " \\\n            ".join(_option_lines(qemu_argv(_launch_spec(guest, accel))))

    return _ENV.get_template("run.sh.j2").render(
        version=__version__, name=guest.name, model=guest.model, action=guest.action,
        tcg_argv=line("tcg"), kvm_argv=line("kvm"))


def render_libvirt_xml(guest: GuestFiles, directory: Path) -> str:
    """A libvirt domain for the published directory (libvirt wants absolute paths)."""
    model = info(guest.model)

    def absolute(file: str | None) -> str | None:
        return str(directory / file) if file else None

    return _ENV.get_template("domain.xml.j2").render(
        version=__version__, name=guest.name, domain_type="qemu", memory_mb=guest.memory_mb,
        cpus=guest.cpus, machine=model.machine, kernel=absolute(guest.kernel),
        initrd=absolute(guest.initrd), cmdline=guest.cmdline, image=absolute(guest.image),
        agent=guest.agent, libvirt_model=model.libvirt_model, action=guest.action,
        libvirt_action=LIBVIRT_ACTIONS.get(guest.action))
