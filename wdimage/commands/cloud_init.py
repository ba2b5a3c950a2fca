"""wdimage cloud-init: argparse wiring only; the work is in wdimage.image.cloudinit."""

import argparse
import json
from pathlib import Path

from wdimage import log, models
from wdimage.errors import usage_error
from wdimage.fileio import write_atomically
from wdimage.image import cloudinit
from wdimage.image import health as health_
from wdimage.models import Action, Model, info

HELP = """\
Write #cloud-config user-data that makes a stock cloud VM (a distribution's cloud image on OpenStack,
Proxmox VE, KubeVirt or libvirt) watchdog-ready at its first boot, as `wdimage build` bakes an image: the
watchdog daemon and the QEMU guest agent installed, /etc/watchdog.conf from the build's template (device
line active, the health tests validated as the daemon parses them), only the model's driver loaded and the
other QEMU watchdog drivers blacklisted, systemd's RuntimeWatchdog off, the service enabled and started, and
a final check that the daemon holds /dev/watchdog: when it does not, `cloud-init status` says error.

The VM's watchdog device and its action are the host's: the user-data's header says, for QEMU, libvirt,
OpenStack, KubeVirt and Proxmox VE, what to set (or that the platform cannot express the model/action).
Check it with `cloud-init schema --config-file FILE`.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("cloud-init", help="write #cloud-config user-data that makes a stock cloud VM watchdog-ready",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--distro", default="debian", choices=list(cloudinit.FAMILIES),
                   help="the guest's family: " + "; ".join(f"{k}: {v}" for k, v in cloudinit.FAMILIES.items())
                        + " (default: %(default)s)")
    p.add_argument("--model", default=str(Model.I6300ESB), choices=[str(m) for m in Model],
                   help="the VM's QEMU watchdog model (default: %(default)s)")
    p.add_argument("--action", default=str(Action.RESET), choices=[str(a) for a in Action],
                   help="what the host does when the watchdog fires: set on the host, named in the header "
                        "(default: %(default)s)")
    p.add_argument("--timeout", type=int, default=15, metavar="SECONDS",
                   help="watchdog-timeout in the guest, within the model's range (default: %(default)s)")
    health = p.add_argument_group("the watchdog daemon's health tests (as `wdimage build`, watchdog.conf(5))")
    health.add_argument("--ping", action="append", default=[], metavar="ADDR",
                        help="reboot when the IPv4 address ADDR stops answering (validated as the build does: "
                             "QEMU user-mode networking's 10.0.2.2 and 10.0.2.3) (repeatable)")
    health.add_argument("--interface", action="append", default=[], metavar="IFACE",
                        help="reboot when IFACE receives nothing in an interval; needs --ping (repeatable)")
    health.add_argument("--max-load", type=int, metavar="N", help="reboot when the 1-minute load reaches N (>= 2)")
    health.add_argument("--min-memory", type=int, metavar="PAGES",
                        help="reboot when free + buffers + cache falls under PAGES 4 KiB pages")
    health.add_argument("--pidfile", action="append", default=[], metavar="PATH",
                        help="reboot when the process whose PID is in PATH (in the guest) dies (repeatable)")
    health.add_argument("--test-binary", metavar="FILE",
                        help=f"embed FILE (base64) as {health_.GUEST_DIR}/NAME, run every interval")
    health.add_argument("--repair-binary", metavar="FILE",
                        help="embed FILE; run on a lasting failure, exit 0 means repaired (no reboot)")
    health.add_argument("--retry-timeout", type=int, metavar="SECONDS",
                        help="how long a repairable failure may last before the repair or reboot (daemon: 60)")
    p.add_argument("--output", metavar="FILE", help="write the user-data to FILE (default: standard output)")
    p.add_argument("--json", action="store_true",
                   help="print what the user-data does (packages, files, module, check, host settings) as JSON")
    p.set_defaults(func=_cmd_cloud_init)


def make_settings(args) -> cloudinit.CloudInitSettings:
    model, action = Model(args.model), Action(args.action)
    low, high = info(model).timeout_range
    if not low <= args.timeout <= high:
        raise usage_error(f"--timeout {args.timeout}: {model} accepts {low}..{high} seconds")
    health = health_.make_health(ping=tuple(args.ping), interfaces=tuple(args.interface), max_load_1=args.max_load,
                                 min_memory=args.min_memory, pidfiles=tuple(args.pidfile),
                                 test_binary=args.test_binary, repair_binary=args.repair_binary,
                                 retry_timeout=args.retry_timeout, timeout=args.timeout)
    return cloudinit.CloudInitSettings(args.distro, model, action, args.timeout, health)


def _cmd_cloud_init(args) -> int:
    settings = make_settings(args)
    output = Path(args.output) if args.output else None
    if output is not None and (output.is_dir() or not output.parent.is_dir()):
        raise usage_error(f"--output {args.output}: expected a file in an existing directory")
    for note in (models.action_warning(settings.action), models.timeout_note(settings.model, settings.timeout)):
        if note:
            log.info(f"warning: {note}")
    plan = cloudinit.plan(settings)
    text = cloudinit.user_data(plan)
    if output is not None:
        write_atomically(output, text, mode=0o600)
        log.info(f"wrote {output}")
    if args.json:
        print(json.dumps({**plan.to_json(), "output": str(output) if output else None}, indent=2))
    elif output is None:
        print(text, end="")
    return 0
