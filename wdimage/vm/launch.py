"""The QEMU command line for a watchdog-ready guest: one builder shared by the launch stub and the drill.

Never the `-watchdog` option (removed in QEMU 7.2): `-device MODEL` and `-action watchdog=ACTION`.
"""

import dataclasses
from pathlib import Path

from wdimage.models import Action, Model, info


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
    machine: str | None = None  # QEMU machine type; default: the model's (pc, or q35 for the built-in iTCO)
    incoming: str | None = None  # a live migration's destination: `-incoming unix:PATH`
    seed: Path | None = None  # a read-only raw drive beside the image: a cloud-init NoCloud seed (label cidata)


CACHE_MODES = ("writeback", "writethrough", "none", "directsync", "unsafe")  # what QEMU's cache= accepts


def cpu_is_host(spec: LaunchSpec) -> bool:
    """Under KVM the guest gets the host's CPU (`-cpu host`; libvirt's host-passthrough)."""
    return spec.accel == "kvm"


def machine_type(spec: LaunchSpec) -> str:
    return spec.machine or info(spec.model).machine


def qemu_argv(spec: LaunchSpec) -> list[str]:
    if spec.cache not in CACHE_MODES:
        raise ValueError(f"cache={spec.cache!r}: QEMU accepts {', '.join(CACHE_MODES)}")
    model = info(spec.model)
    argv = [
        "qemu-system-x86_64",
        "-machine", f"{machine_type(spec)},accel={spec.accel}",
        "-m", str(spec.memory_mb),
        "-smp", str(spec.cpus),
        "-nographic", "-nodefaults",
        "-serial", spec.serial,
        "-drive", f"file={spec.image},format=qcow2,if=virtio,cache={spec.cache}",
        "-netdev", "user,id=net0,restrict=on",
        "-device", "virtio-net-pci,netdev=net0",
        "-action", f"watchdog={spec.action}",
    ]
    if cpu_is_host(spec):
        argv += ["-cpu", "host"]
    if model.qemu_device:
        argv += ["-device", model.qemu_device]
    if machine_type(spec) == "q35":  # the built-in iTCO: QEMU up to 7.2 keeps it from rebooting
        argv += ["-global", "ICH9-LPC.noreboot=false"]
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
            "-device", "virtio-serial",
            "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        ]
    if spec.seed:
        argv += ["-drive", f"file={spec.seed},format=raw,if=virtio,readonly=on"]
    if spec.snapshot:
        argv += ["-snapshot"]
    if spec.incoming:
        argv += ["-incoming", spec.incoming]
    return argv
