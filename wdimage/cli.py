"""wdimage: make QEMU/KVM guests watchdog-ready, end to end.

  wdimage kernel-config --merge|--check   patch or check a kernel .config for the watchdog drivers
  wdimage build debian|centos|gentoo      bake a watchdog-ready guest image with its QEMU launch stub
  wdimage drill DIR                       boot a built image, crash it, prove the watchdog resets it
  wdimage matrix [--json]                 the CI build matrix (distro x model), exclusions and why
  wdimage diff A B                        what really differs between two builds' manifests
  wdimage index DIR... [--markdown]       gather build outputs (manifests, drill results) into one index

Run 'wdimage COMMAND --help' for each command's options.
"""

import argparse
import os
import sys

from wdimage import __version__, log
from wdimage.commands import build, drill, kernel_config
from wdimage.commands import diff, index, matrix
from wdimage.errors import ExitCode, WdimageError

COMMANDS = (kernel_config, build, drill, matrix, diff, index)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wdimage", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"wdimage {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on usage errors
    log.quiet = args.quiet
    try:
        return int(args.func(args))
    except WdimageError as e:
        if args.debug:
            raise
        print(f"wdimage: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return int(e.code)
    except KeyboardInterrupt:
        print("wdimage: interrupted", file=sys.stderr)
        return int(ExitCode.FAILED)
    except BrokenPipeError:
        # The reader went away (`wdimage ... | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
