"""wdimage kernel-config: merge the watchdog fragments into a kernel .config, or check a config for them.

  --merge  parse the Kconfig tree of --kernel-src, load --config, apply the fragments, resolve the
           dependencies as `make olddefconfig` does, and write the result (temporary file + rename, the
           previous file kept as FILE.old) only if every requested value took effect; otherwise write
           nothing, explain each value that did not stick, and exit 3.
  --check  say whether a kernel config is watchdog-ready, writing nothing: a requested y or m is met by y
           or m (--strict: the exact value). --kernel-src is optional here; with it, failures are explained.

Fragments: kconfig-fragments/watchdog.config, one per --model (default: i6300esb and ib700, the seed
article's menu; with --arch arm64 i6300esb, with --arch s390x diag288), sysrq.config, then each --fragment FILE
in order; later ones override earlier ones. --arch x86_64|arm64|s390x (or x86, aarch64, s390) parses the tree
for that architecture with Debian's cross compiler (gcc-aarch64-linux-gnu, gcc-s390x-linux-gnu) for Kconfig's
compiler tests; a --model that does not exist on the architecture is refused.
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
from wdimage.models import ARCHES, Arch, Model, arch_from_name, arch_info, default_models, model_on_arch_error


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
    p.add_argument("--arch", metavar="ARCH",
                   help=f"the kernel's architecture: {', '.join(Arch)} or their kernel names "
                        f"(default: $ARCH or the host's)")
    p.add_argument("--model", action="append", choices=[m.value for m in Model], default=None,
                   help="watchdog model whose driver to enable (repeatable; default: i6300esb and ib700 on x86, "
                        "every model of --arch elsewhere)")
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


def resolve_arch(given: str | None, models: list[Model]) -> tuple[str | None, list[Model]]:
    """(the kernel ARCH to parse with, the models): --arch by its name or an alias; a model that does not exist
    on it refused (exit 2 naming those that do). Without --arch: $ARCH or the host's, as before."""
    if given is None:
        return None, models
    arch = arch_from_name(given)
    if arch is None:
        names = ", ".join([*Arch, *(a for row in ARCHES.values() for a in row.aliases)])
        raise usage_error(f"--arch {given}: expected one of {names}")
    for model in models:
        if why := model_on_arch_error(model, arch, refused_ok=True):
            raise usage_error(why)
    return arch_info(arch).kernel_arch, models or list(default_models(arch))


def _cmd_kernel_config(args) -> int:
    models = [Model(m) for m in args.model or []]  # none: the fragments fall back to the default models
    args.arch, models = resolve_arch(args.arch, models)
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
