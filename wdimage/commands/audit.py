"""wdimage audit: which of my VMs would actually be reset if it hung? A read-only report of libvirt domains'
watchdog readiness across hosts, one verdict per domain with the first failing check and its fix.

It never starts, stops, pauses, resets, redefines or migrates a domain, never changes a guest (the guest agent
runs one probe script that only reads) and never uses the QEMU monitor passthrough. A shut-off domain is
judged from its XML and stays off.

verdicts:
  armed        the guest feeds the device the domain acts on, and that device can fire
  not-armed    nothing would reset it if it hung: no device, no driver, no daemon, the device line commented
               out, a blacklist, another opener, the daemon on another device, a timeout the driver refuses
  cannot-fire  fed, but the host will not act: q35's iTCO with QEMU's noreboot pin, or an action (none,
               debug, shutdown, inject-nmi, pause) that leaves a hung guest hung
  unknown      the host side alone: no guest agent (channel or daemon), or the domain is not running
  error        the host could not be reached or the guest agent hung: the cause is shown
  proven       with --prove: armed, and the watchdog was seen to fire (the proof of drill --safe)
  proof-failed with --prove: it looked armed, but the proof did not see it fire and come back

--prove is the one option that changes something: on each armed domain, one per host at a time, the proof of
`wdimage drill --libvirt DOMAIN --safe` (the action set to none for a moment through libvirt's monitor
passthrough, which libvirt records as a taint; the daemon frozen until the watchdog fires; re-armed; the action
restored). Each guest goes about one watchdog timeout without a keepalive.

exit codes: 0 every domain armed (or proven); 1 any other verdict (or nothing audited); 2 bad input (a URI or domain name
that is not one, a domain no host has, an output that cannot be written).

examples:
  wdimage audit --all
  wdimage audit --connect qemu+ssh://root@kvm1/system --connect qemu+ssh://root@kvm2/system --all \\
      --prometheus /var/lib/node_exporter/textfile/wdimage.prom --json audit.json
  wdimage audit web1 db1 --junit audit-junit.xml        # CI: one test case per domain
  wdimage audit --all --html fleet.html                 # a page to look at: the fleet, the verdicts, the fixes
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from wdimage.audit import outputs, pages
from wdimage.audit.fleet import DEFAULT_DEADLINE, DEFAULT_JOBS, audit_fleet
from wdimage.audit.prove import prove_armed
from wdimage.audit.verdicts import exit_code
from wdimage.drill.libvirt import DOMAIN_RE, URI_RE  # what wdimage passes to libvirt, as drill --libvirt checks it
from wdimage.errors import usage_error
from wdimage.fileio import check_replaceable, write_atomically
from wdimage.image.outputs import is_html_report
from wdimage.jsonfile import AUDIT


def add_parser(sub) -> None:
    p = sub.add_parser("audit", help="read-only fleet report: is every libvirt domain's watchdog armed?",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("domains", metavar="DOMAIN", nargs="*", help="domains to audit (on every --connect host)")
    p.add_argument("--all", action="store_true", help="every domain of every host (running or not)")
    p.add_argument("--connect", metavar="URI", action="append",
                   help="a libvirt URI (qemu:///system, qemu+ssh://root@host/system, ...); repeat it for several "
                        "hosts, one report grouped by host (default: libvirt's default URI)")
    p.add_argument("--jobs", metavar="N", type=int, default=DEFAULT_JOBS,
                   help=f"domains audited at the same time (default {DEFAULT_JOBS})")
    p.add_argument("--deadline", metavar="SECONDS", type=float, default=DEFAULT_DEADLINE,
                   help=f"give up on a host or a domain after this long: an error line (default "
                        f"{DEFAULT_DEADLINE:.0f})")
    p.add_argument("--json", metavar="FILE", type=Path,
                   help="also write the report as JSON ('-': stdout; schema in docs/audit.md)")
    p.add_argument("--junit", metavar="FILE", type=Path, help="also write JUnit XML: one test case per domain")
    p.add_argument("--prometheus", metavar="FILE", type=Path,
                   help="also write the Prometheus text format for node_exporter's textfile collector "
                        "(wdimage_watchdog_armed{host,domain,model,action} and more), replaced atomically")
    p.add_argument("--html", metavar="FILE", type=Path,
                   help="also write the fleet as one self-contained HTML page: a table per host, the verdict in "
                        "colour, the fix for each domain that is not armed")
    p.add_argument("--prove", action="store_true",
                   help="after the audit, prove each armed domain's watchdog fires, without restarting it (see above)")
    p.add_argument("--force", action="store_true", help="replace output files that wdimage did not write")
    p.set_defaults(func=_cmd)


def check_arguments(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Exit 2 before connecting anywhere: names that are not names, outputs that cannot be written."""
    if bool(args.domains) == bool(args.all):
        raise usage_error("name the DOMAINs to audit, or give --all (not both)")
    for name in args.domains:
        if not DOMAIN_RE.fullmatch(name):
            raise usage_error(f"DOMAIN {name!r}: not a domain name (letters, digits, ' ._+:@-', at most 200)")
    uris = args.connect or [""]
    for uri in uris:
        if uri and not URI_RE.fullmatch(uri):
            raise usage_error(f"--connect {uri!r}: not a libvirt URI (e.g. qemu:///system)")
    if args.jobs < 1 or args.jobs > 256:
        raise usage_error(f"--jobs {args.jobs}: give 1 to 256")
    if not 1 <= args.deadline <= 3600:
        raise usage_error(f"--deadline {args.deadline:g}: give 1 to 3600 seconds")
    for option, path, ours, what in (("--json", args.json, AUDIT.recognizes, "a wdimage audit report"),
                                     ("--junit", args.junit, outputs.is_audit_junit, "a wdimage audit JUnit report"),
                                     ("--prometheus", args.prometheus, outputs.is_audit_textfile,
                                      "a wdimage audit textfile"),
                                     ("--html", args.html, is_html_report, "a wdimage HTML report")):
        if path is None or str(path) == "-":
            continue
        check_replaceable(path, option, ours, what, args.force)
        _check_writable(option, path)
    return uris, list(dict.fromkeys(args.domains))


def _check_writable(option: str, path: Path) -> None:
    """Try it (root passes access(2) checks that the write itself then fails): a scratch file made and removed."""
    try:
        fd, scratch = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
    except OSError as e:
        raise usage_error(f"{option} {path}: cannot write in {path.parent}: {e.strerror}") from None
    os.close(fd)
    os.unlink(scratch)


def _cmd(args: argparse.Namespace) -> int:
    uris, names = check_arguments(args)
    report = audit_fleet(uris, names, jobs=args.jobs, deadline=args.deadline)
    if args.prove:
        prove_armed(report.domains)
    to_stdout = "-" in (str(args.json), str(args.prometheus), str(args.html))
    print(outputs.render_text(report), file=sys.stderr if to_stdout else sys.stdout)
    data = outputs.report_json(report)  # the one description the JSON and the page are rendered from
    for path, render in ((args.json, lambda: json.dumps(data, indent=2) + "\n"),
                         (args.junit, lambda: outputs.report_junit(report)),
                         (args.prometheus, lambda: outputs.report_prometheus(report)),
                         (args.html, lambda: pages.render_html(data))):
        if path is None:
            continue
        if str(path) == "-":
            sys.stdout.write(render())
        else:
            write_atomically(path, render())  # the textfile collector reads at any moment
    return exit_code(d.verdict for d in report.domains)
