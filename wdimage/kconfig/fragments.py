"""Kconfig fragments (`CONFIG_FOO=y` files): where wdimage's are, parsing them with file:line errors, merging
them in order (later ones override earlier ones, and the override is recorded), and reading a .config.
"""

import dataclasses
import difflib
import gzip
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from wdimage import datadir
from wdimage.errors import usage_error
from wdimage.models import DEFAULT_MODELS, Model, info

CORE_FRAGMENT = "watchdog.config"
SYSRQ_FRAGMENT = "sysrq.config"
_SET = re.compile(r"CONFIG_([A-Za-z0-9_]+)=(.*)")
_UNSET = re.compile(r"# CONFIG_([A-Za-z0-9_]+) is not set")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclasses.dataclass(frozen=True)
class Assignment:
    """One `CONFIG_NAME=value` line of a fragment; `value` is unquoted ("n" for `# ... is not set`).
    `quoted` says it was written as a string ("..."): an unquoted value may still be one (see is_string)."""

    name: str
    value: str
    quoted: bool  # a string value ("...")
    file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def config_line(self) -> str:
        if self.quoted:
            escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
            return f'CONFIG_{self.name}="{escaped}"'
        if self.value == "n":
            return f"# CONFIG_{self.name} is not set"
        return f"CONFIG_{self.name}={self.value}"


@dataclasses.dataclass(frozen=True)
class Override:
    """A later fragment's assignment replacing an earlier one of the same symbol."""

    new: Assignment
    old: Assignment

    def describe(self) -> str:
        return (f"{self.new.where}: CONFIG_{self.new.name}={self.new.value} overrides "
                f"CONFIG_{self.old.name}={self.old.value} from {self.old.where}")


@dataclasses.dataclass(frozen=True)
class FragmentSet:
    files: tuple[Path, ...]
    assignments: tuple[Assignment, ...]  # the final one per symbol, in first-seen order
    overrides: tuple[Override, ...]


def fragments_dir() -> Path:
    """kconfig-fragments/ at the top of the source tree, or installed as shared data (wdimage.datadir)."""
    return datadir.find("kconfig-fragments", CORE_FRAGMENT)


def fragment_paths(models: Sequence[Model | str] = DEFAULT_MODELS) -> list[Path]:
    """The fragments for `models`: the watchdog core, each model's driver, and the Magic SysRq key."""
    base = fragments_dir()
    names = [CORE_FRAGMENT]
    for model in models or DEFAULT_MODELS:
        name = info(model).fragment
        if name not in names:
            names.append(name)
    names.append(SYSRQ_FRAGMENT)
    return [base / name for name in names]


def _unquote(raw: str, where: str) -> str:
    m = _QUOTED.fullmatch(raw)
    if not m:
        raise usage_error(f"{where}: malformed string value {raw} (unterminated, or an unescaped quote)",
                          hint='write \\" for a quote inside a string')
    return re.sub(r"\\(.)", r"\1", m.group(1))


def parse_line(text: str, file: Path, line: int) -> Assignment | None:
    """The assignment on one fragment line, None for blank lines and comments; exit 2 on anything else."""
    stripped = text.strip()
    where = f"{file}:{line}"
    if not stripped:
        return None
    if m := _UNSET.fullmatch(stripped):
        return Assignment(m.group(1), "n", False, file, line)
    if stripped.startswith("#"):
        return None
    m = _SET.fullmatch(stripped)
    if not m:
        hint = "lines look like CONFIG_NAME=y, CONFIG_NAME=\"text\", or # CONFIG_NAME is not set"
        if re.fullmatch(r"[A-Za-z0-9_]+=.*", stripped):
            hint = f"symbol names start with CONFIG_: CONFIG_{stripped}"
        raise usage_error(f"{where}: malformed line: {stripped}", hint=hint)
    name, raw = m.group(1), m.group(2).strip()
    if raw.startswith('"'):
        return Assignment(name, _unquote(raw, where), True, file, line)
    if not raw:
        raise usage_error(f"{where}: CONFIG_{name}: no value",
                          hint="values are y, m, n, a number (42, 0x2a) or a quoted string")
    # y/m/n, a number, or an unquoted string (scripts/kconfig accepts those for string symbols, and the
    # kernel's own kernel/configs/*.config use them); the symbol's type decides, where a tree is given.
    return Assignment(name, raw, False, file, line)


def parse_fragment(path: Path) -> list[Assignment]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise usage_error(f"--fragment {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise usage_error(f"--fragment {path}: cannot read it: {e}") from None
    return [a for n, line in enumerate(text.splitlines(), 1) if (a := parse_line(line, path, n))]


def merge(paths: Iterable[Path]) -> FragmentSet:
    """Read `paths` in order; a later assignment of a symbol replaces an earlier one (and is reported)."""
    final: dict[str, Assignment] = {}
    overrides: list[Override] = []
    files = tuple(paths)
    for path in files:
        for a in parse_fragment(path):
            old = final.get(a.name)
            if old is not None and (old.value, old.quoted) != (a.value, a.quoted):
                overrides.append(Override(a, old))
            final[a.name] = a
    return FragmentSet(files, tuple(final.values()), tuple(overrides))


def nearest_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Existing symbol names closest to a mistyped one, for a 'did you mean' hint."""
    return difflib.get_close_matches(name.upper(), list(known), n=n, cutoff=0.75)


def read_config_text(path: Path) -> str:
    """A .config's text, gunzipping /proc/config.gz-style files; exit 2 naming the file if unreadable."""
    try:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        return data.decode()
    except FileNotFoundError:
        raise usage_error(f"--config {path}: no such file",
                          hint="give the kernel .config with --config FILE, or use --running") from None
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
        raise usage_error(f"--config {path}: cannot read it as a kernel config: {e}") from None


def config_values(text: str) -> dict[str, str]:
    """Symbol -> value of a .config ("n" for `is not set`, strings unquoted); other lines are ignored."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _UNSET.fullmatch(line):
            values[m.group(1)] = "n"
        elif m := _SET.fullmatch(line):
            raw = m.group(2)
            if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            values[m.group(1)] = raw
    return values
