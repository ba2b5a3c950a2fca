"""wdimage drill: not implemented yet."""

from wdimage.errors import failure


def add_parser(sub) -> None:
    p = sub.add_parser("drill", help="(not implemented yet)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    raise failure("'wdimage drill' is not implemented yet")
