"""wdimage: make QEMU/KVM guests watchdog-ready, end to end.

  wdimage kernel-config --merge|--check   patch or check a kernel .config for the watchdog drivers
  wdimage build debian|centos|gentoo      bake a watchdog-ready guest image with its QEMU launch stub
  wdimage drill DIR                       boot a built image, crash it, prove the watchdog resets it
  wdimage cloud-init [--model M] ...      user-data that makes a stock cloud VM watchdog-ready at first boot
  wdimage audit [--connect URI]... --all  read-only: is every libvirt domain's watchdog armed? (fleet report)
  wdimage matrix [--json]                 the CI build matrix (distro x model), exclusions and why
  wdimage diff A B                        what really differs between two builds' manifests
  wdimage index DIR... [--markdown]       gather build outputs (manifests, drill results) into one index

Run 'wdimage COMMAND --help' for each command's options.

Exit codes: 0 success; 1 a build or drill failed; 2 bad input or usage (the message names the file, line or
option); 3 kernel-config: --merge's values did not take effect, or --check's config is not watchdog-ready;
130 or 143 interrupted by SIGINT or SIGTERM (after cleaning up).
--json: kernel-config, build, matrix and diff print JSON on stdout; drill writes it to --json FILE.
"""

import argparse
import os
import signal
import sys

from wdimage import __version__, log
from wdimage.commands import audit, build, cloud_init, diff, drill, index, kernel_config, matrix
from wdimage.errors import ExitCode, Interrupted, WdimageError

COMMANDS = (kernel_config, build, drill, audit, cloud_init, matrix, diff, index)


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


TERMINATING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def install_signal_handlers() -> None:
    """SIGINT (Ctrl-C), SIGTERM (a cancelled CI job) and SIGHUP raise Interrupted in the main thread, so
    that each command's cleanup runs: DIB gets the signal and cleans up its mounts (wdimage.run), the
    drill stops its guests, partial directories are removed. A signal that arrives while a cleanup waits
    is not raised again (wdimage.run.signals_deferred)."""
    for signum in TERMINATING_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup'd: stay ignored
            signal.signal(signum, _raise_interrupted)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on usage errors
    log.quiet = args.quiet
    if argv is None:  # the `wdimage` process itself (tests calling main() keep pytest's handlers)
        install_signal_handlers()
    try:
        return int(args.func(args))
    except WdimageError as e:
        if args.debug:
            raise
        print(f"wdimage: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return int(e.code)
    except Interrupted as e:
        print(f"wdimage: interrupted by {signal.Signals(e.signum).name}; cleaned up", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("wdimage: interrupted by SIGINT; cleaned up", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        # The reader went away (`wdimage ... | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
