"""The README's tables that are generated from wdimage's own rows, so that they cannot drift from the code.

  python -m wdimage.docs           print the generated blocks
  python -m wdimage.docs --write   replace each block between its markers in README.md (and docs/*.md)
  python -m wdimage.docs --check   exit 1 naming each file whose block differs (tests/unit/test_docs.py)

A block sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`. A new column is one entry in
MODEL_COLUMNS or ACTION_COLUMNS: a header and a function of the row.
"""

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from wdimage.models import ACTIONS, MODELS, ModelInfo

Column = tuple[str, Callable]


def _libvirt(m: ModelInfo) -> str:
    if m.qemu_device:
        return f"`<watchdog model='{m.libvirt_model}'>`"
    if m.refused:
        return "no model"
    return f"`qemu:commandline` (libvirt 9.0 has no `{m.model}` model)"


def _platform(word) -> str:
    """A platform's word for the row, or `no` where it has none (models.Cannot)."""
    return f"`{word}`" if isinstance(word, str) else "no"


MODEL_COLUMNS: list[Column] = [
    ("model (`--model`)", lambda m: f"`{m.model}`"),
    ("bus", lambda m: m.bus),
    ("QEMU", lambda m: f"`-device {m.qemu_device}`" if m.qemu_device else f"built into `-machine {m.machine}`"),
    ("architecture: machines", lambda m: "; ".join(f"{arch}: " + ", ".join(f"`{x}`" for x in machines)
                                                   for arch, machines in m.machines.items())
                                         + (" (refused: see docs/architectures.md)" if m.refused else "")),
    ("timeout (s)", lambda m: f"{m.timeout_range[0]}-{m.timeout_range[1]}"),
    ("countdowns", lambda m: str(m.stages)),
    ("driver", lambda m: f"`{m.module}` (`CONFIG_{m.kconfig_symbol}`)"),
    ("fragment", lambda m: f"[`{m.fragment}`](kconfig-fragments/{m.fragment})"),
    ("libvirt", _libvirt),
    ("OpenStack", lambda m: "yes (Nova emulates it)" if m.nova else "no"),
    ("KubeVirt", lambda m: _platform(m.kubevirt)),
    ("Proxmox VE", lambda m: _platform(m.proxmox)),
]

ACTION_COLUMNS: list[Column] = [
    ("action (`--action`)", lambda a: f"`{a.action}`"),
    ("what QEMU does", lambda a: a.effect),
    ("crashed guest back by itself", lambda a: "yes" if a.recovers else "no"),
    ("libvirt `<watchdog action=>`", lambda a: " ".join(f"`{w}`" for w in (a.libvirt, *a.libvirt_also) if w) or "none"),
    ("OpenStack `hw_watchdog_action`", lambda a: f"`{a.openstack}`" if a.openstack else "none"),
    ("KubeVirt", lambda a: _platform(a.kubevirt)),
    ("Proxmox VE", lambda a: _platform(a.proxmox)),
]


def table(columns: list[Column], rows) -> str:
    lines = ["| " + " | ".join(header for header, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row).replace("|", "\\|") for _, cell in columns) + " |" for row in rows]
    return "\n".join(lines)


BLOCKS: dict[str, Callable[[], str]] = {
    "models": lambda: table(MODEL_COLUMNS, MODELS.values()),
    "actions": lambda: table(ACTION_COLUMNS, ACTIONS.values()),
}

_BLOCK = re.compile(r"(<!-- generated: (?P<name>[a-z-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def render(text: str) -> str:
    """`text` with every generated block replaced by what the rows say now."""
    def fill(m: re.Match) -> str:
        if m["name"] not in BLOCKS:
            raise SystemExit(f"wdimage.docs: unknown block {m['name']!r} (known: {', '.join(BLOCKS)})")
        return f"{m[1]}{BLOCKS[m['name']]()}\n{m[4]}"
    return _BLOCK.sub(fill, text)


def documents(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wdimage.docs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="update the blocks in place")
    mode.add_argument("--check", action="store_true", help="exit 1 when a committed block differs")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: .)")
    args = parser.parse_args(argv)
    if not (args.write or args.check):
        for name, make in BLOCKS.items():
            print(f"<!-- generated: {name} -->\n{make()}\n<!-- end: {name} -->\n")
        return 0
    stale = []
    for path in documents(args.root):
        if not path.is_file():
            continue
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(path)
            if args.write:
                path.write_text(new)
    if args.check and stale:
        print("generated tables out of date (run: python -m wdimage.docs --write): "
              + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
