"""wdimage build: not implemented yet."""

from wdimage.errors import failure


def add_parser(sub) -> None:
    p = sub.add_parser("build", help="(not implemented yet)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    raise failure("'wdimage build' is not implemented yet")
