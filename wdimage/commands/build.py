"""wdimage build: argparse wiring only; the work is in wdimage.build."""

import argparse
import json

from wdimage import build, distros, log, models
from wdimage.models import Action, Model

HELP = """\
Bake a watchdog-ready guest image with diskimage-builder: the watchdog daemon configured with
`watchdog-device = /dev/watchdog` active and its service enabled, only the chosen model's driver loaded
at boot, the QEMU guest agent, and beside the image a QEMU launch stub, a libvirt domain, manifest.json
and SHA256SUMS. The output directory appears only when the build succeeded (a previous one is kept as
DIR.old). Where device-mapper works the image is a partitioned, bootable disk; elsewhere a partitionless
image whose kernel and initrd are booted directly by QEMU.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="bake a watchdog-ready guest image with its QEMU launch stub",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("distro", choices=sorted(distros.DISTROS), help="the guest's distribution")
    p.add_argument("--release", help="distro release (debian: bookworm; centos: 9-stream; "
                                     "gentoo: the profile, default/linux/amd64/23.0)")
    p.add_argument("--model", default=str(Model.I6300ESB), choices=[str(m) for m in Model],
                   help="QEMU watchdog model (default: %(default)s)")
    p.add_argument("--action", default=str(Action.RESET), choices=[str(a) for a in Action],
                   help="what QEMU does when the watchdog fires (default: %(default)s)")
    p.add_argument("--timeout", type=int, default=15, metavar="SECONDS",
                   help="watchdog-timeout in the guest, within the model's range (default: %(default)s)")
    p.add_argument("--output", metavar="DIR", help="output directory (default: ./output/NAME)")
    p.add_argument("--name", help="image name: letters, digits, '.', '_', '-' (default: DISTRO-MODEL)")
    p.add_argument("--mirror", metavar="URL",
                   help="package mirror (debian default: the one in this machine's apt sources)")
    p.add_argument("--no-agent", dest="agent", action="store_false",
                   help="leave the QEMU guest agent out (the drill needs it)")
    p.add_argument("--kernel", choices=build.KERNEL_CHOICES, default="bin",
                   help="debian, gentoo: the distro's prebuilt kernel (bin), or compiled here from --kernel-src "
                        "with the watchdog fragments merged and proved (source)")
    p.add_argument("--kernel-src", metavar="DIR",
                   help="--kernel source: a clean Linux source tree (built out of tree, O= under the cache)")
    p.add_argument("--config", metavar="FILE",
                   help="--kernel source: your kernel config (default: the tree's defconfig + kvm_guest.config "
                        "+ kconfig-fragments/guest-kernel.config)")
    p.add_argument("--fragment", action="append", default=[], metavar="FILE",
                   help="--kernel source: your own config fragment, applied after wdimage's (repeatable)")
    p.add_argument("--init", choices=build.INIT_CHOICES,
                   help="debian: the guest's init system (default: systemd; openrc swaps in sysvinit-core + openrc)")
    p.add_argument("--base-image", metavar="FILE",
                   help="centos: a local cloud image to start from (offline builds; DIB_LOCAL_IMAGE)")
    p.add_argument("--ping", action="append", default=[], metavar="HOST",
                   help="watchdog daemon health test: reboot when HOST stops answering (repeatable)")
    p.add_argument("--interface", action="append", default=[], metavar="IFACE",
                   help="watchdog daemon health test: reboot when IFACE receives nothing (repeatable)")
    p.add_argument("--max-load", type=int, metavar="N", help="watchdog daemon health test: max 1-minute load")
    p.add_argument("--dry-run", action="store_true",
                   help="print the exact disk-image-create command line and build nothing")
    p.add_argument("--json", action="store_true", help="print the result (manifest or command) as JSON")
    p.set_defaults(func=_cmd_build)


def _cmd_build(args) -> int:
    settings = build.make_settings(
        args.distro, release=args.release, model=args.model, action=args.action, timeout=args.timeout,
        name=args.name, output=args.output, mirror=args.mirror, agent=args.agent, kernel=args.kernel,
        base_image=args.base_image, ping=tuple(args.ping), interfaces=tuple(args.interface),
        max_load_1=args.max_load, init=args.init, kernel_src=args.kernel_src, kernel_config=args.config,
        kernel_fragments=tuple(args.fragment))
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
        print(f"built {settings.output} ({manifest['boot']} boot, {manifest['build']['seconds']} s)")
        for role, package in manifest["packages"].items():
            print(f"  {role}: {package['name']} {package['version']}")
        if "kernel_source" in manifest:
            source = manifest["kernel_source"]
            print(f"  kernel from source: {source['release']} (Linux {source['version']}, config sha256 "
                  f"{source['config_sha256'][:16]}, {source['compiler']})")
        print(f"  run it: {settings.output / manifest['files']['launch_stub']}")
    return 0
