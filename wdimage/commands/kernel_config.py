"""wdimage kernel-config: not implemented yet."""

from wdimage.errors import failure


def add_parser(sub) -> None:
    p = sub.add_parser("kernel-config", help="(not implemented yet)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    raise failure("'wdimage kernel-config' is not implemented yet")
