"""The QEMU command line for a watchdog-ready guest: one builder shared by the launch stub and the drill.

Never the `-watchdog` option (removed in QEMU 7.2): `-device MODEL` and `-action watchdog=ACTION`. What differs by
guest architecture (the emulator, the machine, the CPU, virtio over PCI or s390x's channel I/O) is read off the
architecture's row in wdimage.models.ARCHES.
"""

import dataclasses
from pathlib import Path

from wdimage.models import Action, Arch, Model, arch_info, info, machines_of


@dataclasses.dataclass(frozen=True)
class LaunchSpec:
    model: Model
    action: Action
    image: Path
    kernel: Path | None = None  # direct kernel boot when set (partitionless images)
    initrd: Path | None = None
    cmdline: str | None = None
    memory_mb: int = 1024
    cpus: int = 2
    accel: str = "tcg"  # "kvm" only where a probe boot showed it works
    qmp_socket: Path | None = None  # unix socket, server, no wait
    qga_socket: Path | None = None  # guest agent channel org.qemu.guest_agent.0
    serial: str = "mon:stdio"  # a QEMU chardev spec, e.g. "file:/tmp/console.log"
    snapshot: bool = False  # throw away writes (the built image is never modified)
    # QEMU's drive cache mode. "unsafe" ignores the guest's flushes: acceptable only for a throwaway overlay
    # (the drill's); the launch stub, which may boot the published image itself, uses "writeback".
    cache: str = "unsafe"
    machine: str | None = None  # QEMU machine type; default: the model's on `arch` (pc, q35 for iTCO, virt, ...)
    arch: Arch = Arch.X86_64  # the guest's architecture: the emulator, CPU and virtio transport
    incoming: str | None = None  # a live migration's destination: `-incoming unix:PATH`
    seed: Path | None = None  # a read-only raw drive beside the image: a cloud-init NoCloud seed (label cidata)


CACHE_MODES = ("writeback", "writethrough", "none", "directsync", "unsafe")  # what QEMU's cache= accepts


def cpu_is_host(spec: LaunchSpec) -> bool:
    """Under KVM the guest gets the host's CPU (`-cpu host`; libvirt's host-passthrough)."""
    return spec.accel == "kvm"


def cpu_model(spec: LaunchSpec) -> str | None:
    """`-cpu`: the host's under KVM, the architecture's TCG choice otherwise (None: QEMU's default)."""
    about = arch_info(spec.arch)
    return about.cpu_kvm if cpu_is_host(spec) else about.cpu_tcg


def machine_type(spec: LaunchSpec) -> str:
    return spec.machine or (machines_of(spec.model, spec.arch) or (arch_info(spec.arch).default_machine,))[0]


def virtio_device(spec: LaunchSpec, kind: str) -> str:
    """A virtio device on the architecture's transport: virtio-net-pci, virtio-serial-ccw, ... (x86 keeps
    QEMU's `virtio-serial` alias, which is what its launch stubs always said)."""
    transport = arch_info(spec.arch).virtio_transport
    if kind == "virtio-serial" and spec.arch is Arch.X86_64:
        return kind
    return f"{kind}-{transport}"


def qemu_argv(spec: LaunchSpec) -> list[str]:
    if spec.cache not in CACHE_MODES:
        raise ValueError(f"cache={spec.cache!r}: QEMU accepts {', '.join(CACHE_MODES)}")
    model = info(spec.model)
    about = arch_info(spec.arch)
    argv = [
        about.qemu_system,
        "-machine", f"{machine_type(spec)},accel={spec.accel}",
        "-m", str(spec.memory_mb),
        "-smp", str(spec.cpus),
        "-nographic", "-nodefaults",
        "-serial", spec.serial,
        "-drive", f"file={spec.image},format=qcow2,if=virtio,cache={spec.cache}",
        "-netdev", "user,id=net0,restrict=on",
        "-device", f"{virtio_device(spec, 'virtio-net')},netdev=net0",
        "-action", f"watchdog={spec.action}",
    ]
    if about.panic_action:  # the watchdog, not QEMU's own panic handling, must answer the guest's panic
        argv += ["-action", f"panic={about.panic_action}"]
    if cpu := cpu_model(spec):
        argv += ["-cpu", cpu]
    if model.qemu_device:
        argv += ["-device", model.qemu_device]
    if machine_type(spec) == "q35":  # the built-in iTCO: QEMU up to 7.2 keeps it from rebooting
        argv += ["-global", "ICH9-LPC.noreboot=false"]
    if not spec.kernel and about.firmware:
        argv += ["-bios", about.firmware]
    if spec.kernel:
        argv += ["-kernel", str(spec.kernel)]
        if spec.initrd:
            argv += ["-initrd", str(spec.initrd)]
        if spec.cmdline:
            argv += ["-append", spec.cmdline]
    if spec.qmp_socket:
        argv += ["-qmp", f"unix:{spec.qmp_socket},server=on,wait=off"]
    if spec.qga_socket:
        argv += [
            "-chardev", f"socket,path={spec.qga_socket},server=on,wait=off,id=qga0",
            "-device", virtio_device(spec, "virtio-serial"),
            "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]
    if spec.seed:
        argv += ["-drive", f"file={spec.seed},format=raw,if=virtio,readonly=on"]
    if spec.snapshot:
        argv += ["-snapshot"]
    if spec.incoming:
        argv += ["-incoming", spec.incoming]
    return argv
