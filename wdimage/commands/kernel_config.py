"""wdimage kernel-config: merge the watchdog fragments into a kernel .config, or check a config for them.

  --merge  parse the Kconfig tree of --kernel-src, load --config, apply the fragments, resolve the
           dependencies as `make olddefconfig` does, and write the result (temporary file + rename, the
           previous file kept as FILE.old) only if every requested value took effect; otherwise write
           nothing, explain each value that did not stick, and exit 3.
  --check  say whether a kernel config is watchdog-ready, writing nothing: a requested y or m is met by y
           or m (--strict: the exact value). --kernel-src is optional here; with it, failures are explained.

Fragments: kconfig-fragments/watchdog.config, one per --model (default: i6300esb and ib700, the seed
article's menu), sysrq.config, then each --fragment FILE in order; later ones override earlier ones.
Exit codes: 0 ok, 2 bad input (naming the file:line or option; a file with no CONFIG_ line is not a
config), 3 --merge: values did not take effect; --check: the config is not watchdog-ready.
"""

import argparse
import json
from pathlib import Path

from wdimage.errors import ExitCode, usage_error
from wdimage.kconfig.config import (
    DEFAULT_KERNEL_SRC,
    Report,
    check_config,
    merge_fragments,
    render_text,
    running_config,
)
from wdimage.models import Model


def add_parser(sub) -> None:
    p = sub.add_parser("kernel-config", help="merge or check the watchdog options of a kernel .config",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--merge", action="store_true", help="merge the fragments into the config")
    mode.add_argument("--check", action="store_true", help="check the config for the fragments' values")
    p.add_argument("--kernel-src", type=Path, metavar="DIR",
                   help=f"kernel source tree (--merge default: {DEFAULT_KERNEL_SRC}; optional for --check)")
    p.add_argument("--config", type=Path, metavar="FILE",
                   help="kernel config (default: KERNEL_SRC/.config; /proc/config.gz works too)")
    p.add_argument("--output", type=Path, metavar="FILE", help="--merge: write here (default: --config)")
    p.add_argument("--arch", metavar="ARCH", help="kernel ARCH (default: $ARCH or the host's, e.g. x86)")
    p.add_argument("--model", action="append", choices=[m.value for m in Model], default=None,
                   help="watchdog model whose driver to enable (repeatable; default: i6300esb and ib700)")
    p.add_argument("--fragment", action="append", type=Path, default=[], metavar="FILE",
                   help="your own fragment, applied after wdimage's (repeatable)")
    p.add_argument("--builtin", action="store_true",
                   help="--merge: where MODULES=n, ask for y instead of each requested m")
    p.add_argument("--strict", action="store_true", help="--check: demand the exact values (m is not y)")
    p.add_argument("--running", action="store_true",
                   help="--check: the running kernel's config (/proc/config.gz or /boot/config-$(uname -r))")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.set_defaults(func=_cmd_kernel_config)


def _reject(options: dict[str, bool], mode: str) -> None:
    for option, given in options.items():
        if given:
            raise usage_error(f"{option} cannot be used with {mode}")


def _config_path(args) -> Path:
    if args.running:
        if args.config:
            raise usage_error("--running and --config name two configs; give one")
        return running_config()
    if args.config:
        return args.config
    return (args.kernel_src or DEFAULT_KERNEL_SRC) / ".config"


def _cmd_kernel_config(args) -> int:
    models = [Model(m) for m in args.model or []]  # none: the fragments fall back to the default models
    if args.merge:
        _reject({"--strict": args.strict, "--running": args.running}, "--merge")
        report = merge_fragments(
            _config_path(args), models, kernel_src=args.kernel_src or DEFAULT_KERNEL_SRC, output=args.output,
            arch=args.arch, extra_fragments=args.fragment, builtin=args.builtin)
    else:
        _reject({"--output": args.output is not None, "--builtin": args.builtin}, "--check")
        report = check_config(_config_path(args), models, kernel_src=args.kernel_src,
                              extra_fragments=args.fragment, strict=args.strict, arch=args.arch)
    _print(report, args.json)
    return int(ExitCode.OK if report.ok else ExitCode.NOT_EFFECTIVE)


def _print(report: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(render_text(report))
