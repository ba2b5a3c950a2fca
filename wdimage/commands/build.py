"""wdimage build: argparse wiring only; the work is in wdimage.image.build."""

import argparse
import json

from wdimage import log, models
from wdimage.image import build, dib, distros
from wdimage.image.distros import Init, Initramfs, Kernel
from wdimage.image.render import LibvirtType
from wdimage.models import Action, Arch, Model, info

HELP = """\
Bake a watchdog-ready guest image with diskimage-builder: the watchdog daemon configured with
`watchdog-device = /dev/watchdog` active and its service enabled, only the chosen model's driver loaded
at boot, the QEMU guest agent, and beside the image a QEMU launch stub, a libvirt domain, a KubeVirt
VirtualMachine and a Proxmox VE import script (each left out, saying why, where the platform cannot express
the model or action), manifest.json and SHA256SUMS. The output directory appears only when the build succeeded (a previous one is kept as
DIR.old; only a previous wdimage output is ever replaced, see --force). Where device-mapper works the image is a partitioned, bootable disk; elsewhere a partitionless
image whose kernel and initrd are booted directly by QEMU.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="bake a watchdog-ready guest image with its QEMU launch stub",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("distro", choices=sorted(distros.DISTROS), help="the guest's distribution")
    p.add_argument("--release", help=_releases_help())
    p.add_argument("--model", default=str(Model.I6300ESB), choices=[str(m) for m in Model],
                   help="QEMU watchdog model (default: %(default)s); " + _models_help())
    p.add_argument("--arch", default=str(Arch.X86_64), metavar="ARCH",
                   help=f"the guest's architecture: {', '.join(Arch)} (default: %(default)s). A foreign one is "
                        f"built through qemu-user-static (binfmt_misc mounted: `make binfmt`) and booted under TCG; "
                        f"see docs/architectures.md")
    p.add_argument("--action", default=str(Action.RESET), choices=[str(a) for a in Action],
                   help="what QEMU does when the watchdog fires (default: %(default)s)")
    p.add_argument("--timeout", type=int, default=15, metavar="SECONDS",
                   help="watchdog-timeout in the guest, within the model's range (default: %(default)s)")
    p.add_argument("--output", metavar="DIR",
                   help="output directory (default: ./output/NAME); an existing one is replaced only when it "
                        "is a previous wdimage output (kept as DIR.old)")
    p.add_argument("--force", action="store_true",
                   help="replace --output DIR even when it is not a previous wdimage output")
    p.add_argument("--name", help="image name: letters, digits, '.', '_', '-' (default: DISTRO-MODEL, or "
                                  "DISTRO-ARCH-MODEL off x86_64)")
    p.add_argument("--mirror", metavar="URL",
                   help="package mirror. " + "; ".join(f"{d.name}: {d.mirror_help}" for d in distros.DISTROS.values()))
    p.add_argument("--no-agent", dest="agent", action="store_false",
                   help="leave the QEMU guest agent out (the drill needs it)")
    p.add_argument("--drill-agent", action="store_true",
                   help="for drill images: on CentOS/RHEL, let `wdimage drill` use the guest agent (allow "
                        "guest-exec, make the agent's SELinux domain permissive). Off by default: those images "
                        "keep the distro's locked-down agent; Debian's and Gentoo's agents need nothing. "
                        "Recorded as drill_agent in manifest.json")
    p.add_argument("--kernel", choices=[str(k) for k in Kernel], default=str(Kernel.BIN),
                   help=f"{distros.names(lambda d: d.kernel_packaging, ', ')}: the distro's prebuilt kernel (bin), "
                        f"or compiled here from --kernel-src with the watchdog fragments merged and proved (source)")
    p.add_argument("--kernel-src", metavar="DIR",
                   help="--kernel source: a clean Linux source tree (built out of tree, O= under the cache)")
    p.add_argument("--config", metavar="FILE",
                   help="--kernel source: your kernel config (default: the tree's defconfig + kvm_guest.config "
                        "+ kconfig-fragments/guest-kernel.config)")
    p.add_argument("--fragment", action="append", default=[], metavar="FILE",
                   help="--kernel source: your own config fragment, applied after wdimage's (repeatable)")
    p.add_argument("--init", choices=[str(i) for i in Init],
                   help="debian: the guest's init system (default: systemd; openrc swaps in sysvinit-core + openrc)")
    p.add_argument("--initramfs", choices=[str(i) for i in Initramfs],
                   help="the tool that makes the guest's initramfs, where wd_keepalive arms /dev/watchdog before "
                        "the real root boots. " + "; ".join(
                            f"{d.name}: {' or '.join(d.initramfs)} (default {d.initramfs[0]})"
                            for d in distros.DISTROS.values()) + ". On debian, dracut replaces initramfs-tools")
    p.add_argument("--base-image", metavar="FILE",
                   help="centos: a local GenericCloud image instead of the download (DIB_LOCAL_IMAGE); dnf "
                        "still needs the CentOS repositories or --mirror: not an offline build")
    p.add_argument("--layout", default=dib.AUTO, choices=dib.LAYOUT_CHOICES,
                   help="auto: a partitioned disk where device-mapper works, else direct; direct: a partitionless "
                        "image booted with its kernel and initrd; disk: the partitioned disk (default: %(default)s)")
    p.add_argument("--libvirt-type", choices=[str(t) for t in LibvirtType], default=str(LibvirtType.KVM),
                   help="the libvirt domain's type: kvm, or qemu (TCG) where KVM does not work (default: %(default)s)")
    p.add_argument("--containerdisk", action="store_true",
                   help="also write the image as a KubeVirt containerDisk: NAME.containerdisk.tar, an OCI archive "
                        "with the disk under /disk/ (and a direct-boot image's kernel and initrd under /boot/), "
                        "made with umoci and skopeo; push it with skopeo copy oci-archive:FILE docker://REF")
    health = p.add_argument_group("the watchdog daemon's health tests (watchdog.conf(5); wdimage drill "
                                  "--fault net|load|memory|service|test proves them)")
    health.add_argument("--ping", action="append", default=[], metavar="ADDR",
                        help="reboot when the IPv4 address ADDR stops answering; the guest's user-mode network "
                             "answers from 10.0.2.2 and 10.0.2.3 only (repeatable)")
    health.add_argument("--interface", action="append", default=[], metavar="IFACE",
                        help="reboot when IFACE receives nothing in an interval; needs --ping (repeatable)")
    health.add_argument("--max-load", type=int, metavar="N", help="reboot when the 1-minute load reaches N (>= 2)")
    health.add_argument("--min-memory", type=int, metavar="PAGES",
                        help="reboot when free + buffers + cache falls under PAGES 4 KiB pages")
    health.add_argument("--pidfile", action="append", default=[], metavar="PATH",
                        help="reboot when the process whose PID is in PATH (in the guest) dies (repeatable)")
    health.add_argument("--test-binary", metavar="FILE",
                        help="install FILE and run it every interval; a non-zero exit is a failure")
    health.add_argument("--repair-binary", metavar="FILE",
                        help="install FILE; run on a lasting failure, exit 0 means repaired (no reboot)")
    health.add_argument("--test-break", metavar="COMMAND",
                        help="a guest command that makes --test-binary fail (the drill's `test` fault runs it)")
    health.add_argument("--retry-timeout", type=int, metavar="SECONDS",
                        help="how long a repairable failure may last before the repair or reboot (daemon: 60)")
    health.add_argument("--health-example", action="store_true",
                        help="wdimage's example service (pidfile /run/wdimage-example.pid) with an example "
                             "test/repair pair, the targets of the drill's service and test faults")
    p.add_argument("--dry-run", action="store_true",
                   help="print the exact disk-image-create command line and build nothing")
    p.add_argument("--json", action="store_true", help="print the result (manifest or command) as JSON")
    p.set_defaults(func=_cmd_build)


def _models_help() -> str:
    """Which models exist on which architecture (and machine), from the model table."""
    parts = []
    for model in Model:
        about = info(model)
        where = ", ".join(f"{a} {'/'.join(m)}" for a, m in about.machines.items())
        parts.append(f"{model} on {where}" + (" (refused: firmware)" if about.refused else ""))
    return "; ".join(parts)


def _releases_help() -> str:
    parts = []
    for name, spec in distros.DISTROS.items():
        verified = ", ".join(r.name for r in spec.releases if r.verified)
        others = ", ".join(r.name for r in spec.releases if not r.verified)
        also = f"; also {others} (unverified: a warning)" if others else ""
        parts.append(f"{name}: {verified} (default, verified){also}")
    return "distro release; others exit 2. " + ". ".join(parts)


def _cmd_build(args) -> int:
    settings = build.make_settings(
        args.distro, release=args.release, model=args.model, action=args.action, timeout=args.timeout,
        name=args.name, output=args.output, mirror=args.mirror, agent=args.agent,
        drill_agent=args.drill_agent, kernel=args.kernel,
        base_image=args.base_image, ping=tuple(args.ping), interfaces=tuple(args.interface),
        max_load_1=args.max_load, init=args.init, initramfs=args.initramfs, layout=args.layout,
        libvirt_type=args.libvirt_type,
        health_options=dict(min_memory=args.min_memory, pidfiles=tuple(args.pidfile), test_binary=args.test_binary,
                            repair_binary=args.repair_binary, retry_timeout=args.retry_timeout,
                            test_break=args.test_break, example=args.health_example),
        force=args.force, kernel_src=args.kernel_src, kernel_config=args.config,
        kernel_fragments=tuple(args.fragment), containerdisk=args.containerdisk, arch=args.arch)
    for note in (models.action_warning(settings.action), models.timeout_note(settings.model, settings.timeout)):
        if note:
            log.info(f"warning: {note}")
    result = build.build(settings, dry_run=args.dry_run)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif args.dry_run:
        print(result.command)
    else:
        manifest = result.manifest
        print(f"built {settings.output} ({manifest.boot} boot, {manifest.build.seconds} s)")
        for role, package in manifest.packages.items():
            print(f"  {role}: {package.name} {package.version}")
        if manifest.kernel_source is not None:
            source = manifest.kernel_source
            print(f"  kernel from source: {source['release']} (Linux {source['version']}, config sha256 "
                  f"{source['config_sha256'][:16]}, {source['compiler']})")
        for platform, outcome in (manifest.platforms or {}).items():
            print(f"  {platform}: {outcome.get('file') or 'left out: ' + outcome['left_out']}")
        print(f"  run it: {settings.output / manifest.files.launch_stub}")
    return 0
