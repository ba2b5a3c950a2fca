"""Every file wdimage writes from a template (through wdimage.templating): watchdog.conf, the launch stub, libvirt XML,
the KubeVirt VirtualMachine, the Proxmox VE import script and cloud-init user-data.

Values reach these files only after validation (wdimage.image.build.BuildSettings); on top of that, the launch
stub quotes every QEMU argument for the shell, the XML template is autoescaped, and every string in a YAML
template goes through `q` (a JSON string, which YAML reads as a double-quoted scalar).
"""

import dataclasses
import enum
import json
import re
import shlex
from pathlib import Path

from wdimage import __version__, templating
from wdimage.models import Action, Arch, Model, action_info, arch_info, info
from wdimage.vm.launch import LaunchSpec, cpu_is_host, cpu_model, machine_type, qemu_argv

_ENV = templating.environment("wdimage.image")

_ENV.filters["q"] = lambda value: json.dumps(str(value))  # YAML: a double-quoted scalar, every character escaped
_ENV.filters["sh"] = lambda value: shlex.quote(str(value))

# Placeholders for the two directories the launch stub only knows when it runs.
_HERE = "@WDIMAGE_HERE@"
_RUNDIR = "@WDIMAGE_RUNDIR@"

# Kubernetes object names (RFC 1123 labels), and the image references the KubeVirt manifest may carry.
K8S_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
IMAGE_REF_RE = re.compile(r"[a-z0-9][a-z0-9._/-]{0,200}(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?")


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


def render_kubevirt(guest: GuestFiles, words: tuple[str, str], name: str, image_ref: str, file: str,
                    containerdisk_note: str) -> str:
    """A KubeVirt VirtualMachine (kubevirt.io/v1) from the same LaunchSpec: the disk from the containerDisk
    `image_ref`, whose /boot holds the kernel and initrd of a direct-boot image (KubeVirt's kernelBoot)."""
    if not K8S_NAME_RE.fullmatch(name):
        raise ValueError(f"{name!r} is not a Kubernetes object name")
    if not IMAGE_REF_RE.fullmatch(image_ref):
        raise ValueError(f"{image_ref!r} is not an image reference wdimage writes")
    spec = launch_spec(guest, "kvm", here="/boot")
    return _ENV.get_template("kubevirt.yaml.j2").render(
        version=__version__, name=name, spec=spec, device=words[0], action=words[1], image_ref=image_ref,
        file=file, containerdisk_note=containerdisk_note)


def render_proxmox(guest: GuestFiles, words: tuple[str, str], file: str) -> str:
    """The Proxmox VE import script (qm create, importdisk, set) from the same LaunchSpec; its `--watchdog`
    value is qm.conf(5)'s property string."""
    if not LIBVIRT_NAME_RE.fullmatch(guest.name):
        raise ValueError(f"VM name {guest.name!r} is not one wdimage writes")
    spec = launch_spec(guest, "kvm")
    boot_args = None
    if spec.kernel:
        parts = ["-kernel", str(spec.kernel)]
        parts += ["-initrd", str(spec.initrd)] if spec.initrd else []
        parts += ["-append", shlex.quote(spec.cmdline)] if spec.cmdline else []
        boot_args = shell_word(" ".join(parts))
    return _ENV.get_template("proxmox.sh.j2").render(
        version=__version__, name=guest.name, spec=spec, file=file, watchdog=f"model={words[0]},action={words[1]}",
        agent=spec.qga_socket is not None, image=shell_word(str(spec.image)), boot_args=boot_args)


def render_cloud_init_setup(module: str, others: tuple[str, ...], check_seconds: int) -> str:
    """The script cloud-init's runcmd runs: module names from the model rows, every value shell-quoted."""
    return _ENV.get_template("cloud-init-setup.sh.j2").render(
        version=__version__, module=module, others=others, check_seconds=int(check_seconds))


def render_cloud_config(plan, covers: str, script: str) -> str:
    """`#cloud-config` user-data of a wdimage.image.cloudinit.Plan; every string a JSON-quoted YAML scalar, and
    the comment lines carry only table values (no newline can end a comment early)."""
    for value in (covers, *plan.hypervisor.values()):
        if "\n" in value:
            raise ValueError(f"a comment line cannot carry {value!r}")
    return _ENV.get_template("cloud-config.yaml.j2").render(
        version=__version__, s=plan.settings, covers=covers, packages=plan.packages, files=plan.files,
        hypervisor=plan.hypervisor, script=script)
