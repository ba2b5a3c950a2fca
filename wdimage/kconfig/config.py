"""The work of `wdimage kernel-config`: merge the watchdog fragments into a kernel .config (as
scripts/kconfig/merge_config.sh + `make olddefconfig` would, and proving each value took effect), or check a
.config for them. Both return a Report; rendering it as text or JSON is a separate step (render_text,
Report.to_dict).

For the build (checking an image's own /boot/config-*):

    from wdimage.kconfig.config import check_config
    report = check_config(Path("/boot/config-6.1.0-9-amd64"), [Model.I6300ESB])
    report.ok, report.to_dict(), report.explain()

Bad input (unreadable config, malformed fragment, unknown symbol, wrong type) raises WdimageError (exit 2).
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from wdimage import log
from wdimage.errors import usage_error
from wdimage.fileio import default_mode, write_atomically
from wdimage.kconfig.fragments import (
    SYSRQ_FRAGMENT,
    Assignment,
    FragmentSet,
    Override,
    config_values,
    fragment_paths,
    fragments_dir,
    merge,
    nearest_names,
    read_config_text,
)
from wdimage.models import DEFAULT_MODELS, Model

if TYPE_CHECKING:  # kconfiglib is imported only by the commands that parse a Kconfig tree (parse_tree below)
    from wdimage.kconfig.tree import KconfigTree, SymbolFacts

__all__ = ["Report", "SymbolResult", "check_config", "merge_fragments", "fragment_paths", "running_config",
           "render_text"]

DEFAULT_KERNEL_SRC = Path("/usr/src/linux")
TRI_ORDER = {"n": 0, "m": 1, "y": 2}


@dataclasses.dataclass(frozen=True)
class Explanation:
    """Why a requested value did not take effect, as menuconfig's symbol info would tell."""

    type: str
    visibility: str
    assignable: tuple[str, ...]
    has_prompt: bool
    unmet_depends: tuple[tuple[str, str], ...]  # `depends on` terms below the requested value, with values
    selected_by: tuple[tuple[str, str, str], ...]  # (selecting symbol, its whole condition, value)
    modules_off: bool  # MODULES=n ruled out a requested m
    defined_at: tuple[str, ...]

    def lines(self) -> list[str]:
        out = []
        if self.unmet_depends:
            out.append("unmet dependencies: " + ", ".join(f"{t} (={v})" for t, v in self.unmet_depends))
        if self.selected_by:
            # The active selectors first; the others only name who could.
            ordered = sorted(self.selected_by, key=lambda sel: sel[2] == "n")
            shown = [f"{sym} (={v})" for sym, _, v in ordered[:6]]
            more = f" and {len(ordered) - 6} more" if len(ordered) > 6 else ""
            out.append("selected by: " + ", ".join(shown) + more)
        else:
            out.append("selected by: nothing")
        if self.modules_off:
            out.append("MODULES=n rules out m (no loadable modules): pass --builtin to ask for y instead")
        if not self.has_prompt:
            out.append("it has no prompt: only a select or a default can set it")
        out.append(f"type {self.type}, visibility {self.visibility}, "
                   f"assignable now: {', '.join(self.assignable) or 'nothing'}")
        if self.defined_at:
            out.append("defined at " + ", ".join(self.defined_at))
        return out

    def to_dict(self) -> dict:
        return {
            "type": self.type, "visibility": self.visibility, "assignable": list(self.assignable),
            "has_prompt": self.has_prompt,
            "unmet_depends": [{"term": t, "value": v} for t, v in self.unmet_depends],
            "selected_by": [{"symbol": s, "expr": e, "value": v} for s, e, v in self.selected_by],
            "modules_off": self.modules_off, "defined_at": list(self.defined_at),
        }


@dataclasses.dataclass(frozen=True)
class SymbolResult:
    name: str
    requested: str
    result: str | None  # None: not in the config at all
    source: str  # file:line of the fragment line that asked for it
    ok: bool
    note: str | None = None
    explanation: Explanation | None = None
    drill_only: bool = False  # needed by `wdimage drill` (SysRq for the panic fault), not by the watchdog

    def to_dict(self) -> dict:
        return {"symbol": f"CONFIG_{self.name}", "requested": self.requested, "result": self.result,
                "ok": self.ok, "source": self.source, "note": self.note,
                "needed_for": "drill" if self.drill_only else "watchdog",
                "explanation": self.explanation.to_dict() if self.explanation else None}


@dataclasses.dataclass
class Report:
    command: str  # "merge" or "check"
    config: Path
    kernel_src: Path | None
    strict: bool
    fragments: tuple[Path, ...]
    overrides: tuple[Override, ...]
    symbols: list[SymbolResult]
    output: Path | None = None
    written: bool = False
    kernel_version: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        """--check: watchdog-ready (the core and the driver); the drill's needs are reported apart (drillable).
        --merge: every requested value took effect, the drill's included."""
        return all(s.ok for s in self.symbols if self.command == "merge" or not s.drill_only)

    @property
    def drillable(self) -> bool:
        """What `wdimage drill` needs beyond the watchdog (Magic SysRq for the panic fault) is there."""
        return all(s.ok for s in self.symbols if s.drill_only)

    @property
    def failed(self) -> list[SymbolResult]:
        return [s for s in self.symbols if not s.ok]

    def to_dict(self) -> dict:
        return {
            "command": self.command, "ok": self.ok, "drillable": self.drillable, "config": str(self.config),
            "kernel_src": str(self.kernel_src) if self.kernel_src else None,
            "kernel_version": self.kernel_version, "strict": self.strict,
            "output": str(self.output) if self.output else None, "written": self.written,
            "fragments": [str(f) for f in self.fragments],
            "overrides": [{"symbol": f"CONFIG_{o.new.name}", "value": o.new.value, "source": o.new.where,
                           "previous": o.old.value, "previous_source": o.old.where} for o in self.overrides],
            "symbols": [s.to_dict() for s in self.symbols],
            "notes": list(self.notes),
        }

    def explain(self) -> str:
        return render_text(self)


def render_text(report: Report) -> str:
    """The report for people: one line per requested symbol, an explanation under each failure."""
    out = []
    for o in report.overrides:
        out.append(f"override: {o.describe()}")
    for s in report.symbols:
        got = "(absent)" if s.result is None else s.result
        mark = "ok  " if s.ok else ("MISS" if s.drill_only and report.command == "check" else "FAIL")
        need = "  (the drill needs it, not the watchdog)" if s.drill_only and not s.ok else ""
        out.append(f"{mark} CONFIG_{s.name}: requested {s.requested}, got {got}  [{s.source}]{need}")
        if s.note:
            out.append(f"       {s.note}")
        if s.explanation:
            out += [f"       {line}" for line in s.explanation.lines()]
    out += [f"note: {n}" for n in report.notes]
    verdict = _verdict(report)
    out.append(verdict)
    return "\n".join(out)


def _verdict(report: Report) -> str:
    n_bad = len(report.failed)
    if report.command == "merge":
        if report.written:
            return f"merged: {len(report.symbols)} values took effect; wrote {report.output}"
        return (f"not merged: {n_bad} of {len(report.symbols)} requested values did not take effect; "
                f"{report.output} left as it was")
    what = "exact values" if report.strict else "y or m for each requested y/m"
    watchdog = [s for s in report.symbols if not s.drill_only]
    if report.ok:
        verdict = f"watchdog-ready: {report.config} has all {len(watchdog)} watchdog values ({what})"
    else:
        bad = sum(1 for s in watchdog if not s.ok)
        verdict = f"not watchdog-ready: {bad} of {len(watchdog)} watchdog values missing in {report.config}"
    drill = [s for s in report.symbols if s.drill_only]
    if drill and not report.drillable:
        names = ", ".join(f"CONFIG_{s.name}" for s in drill if not s.ok)
        verdict += (f"\nnot drillable: {names} missing; `wdimage drill` cannot crash this kernel with the panic "
                    "fault (the watchdog itself does not need it)")
    return verdict


# --- requests ------------------------------------------------------------------------------------------


def _fragment_set(models: Sequence[Model | str], extra_fragments: Sequence[Path]) -> FragmentSet:
    return merge([*fragment_paths(models), *[Path(f) for f in extra_fragments]])


def _check_type(a: Assignment, kind: str) -> None:
    """Exit 2 if `a`'s value does not fit a symbol of type `kind`, naming the fragment line."""
    fits = {
        "bool": not a.quoted and a.value in ("y", "n"),
        "tristate": not a.quoted and a.value in ("y", "m", "n"),
        "string": a.quoted or a.value not in ("y", "m", "n"),  # conf accepts an unquoted string too
        "int": not a.quoted and a.value.lstrip("-").isdigit(),
        "hex": not a.quoted and _is_hex(a.value),
    }.get(kind, True)
    if not fits:
        expected = {"bool": "y or n", "tristate": "y, m or n", "string": 'a quoted string ("...")',
                    "int": "a decimal number", "hex": "a hex number (0x...)"}[kind]
        shown = f'"{a.value}"' if a.quoted else a.value
        raise usage_error(f"{a.where}: CONFIG_{a.name} is a {kind} symbol; {shown} is not a {kind} value",
                          hint=f"a {kind} takes {expected}")


def _drill_only(a: Assignment) -> bool:
    """Asked for by wdimage's sysrq.config: the drill's panic fault needs it, the watchdog does not."""
    return Path(a.file).name == SYSRQ_FRAGMENT and Path(a.file).parent == fragments_dir()


def _is_hex(value: str) -> bool:
    digits = value[2:] if value.lower().startswith("0x") else value
    return bool(digits) and all(c in "0123456789abcdefABCDEF" for c in digits)


def _validate(fragments: FragmentSet, tree: KconfigTree) -> FragmentSet:
    """Exit 2 on a symbol the tree does not define (suggesting the nearest names) or a wrongly typed value;
    returns the fragments with unquoted string values marked as strings."""
    typed = []
    for a in fragments.assignments:
        if not tree.has_symbol(a.name):
            near = nearest_names(a.name, tree.symbol_names())
            hint = f"did you mean {', '.join('CONFIG_' + n for n in near)}?" if near else \
                f"no similar symbol in {tree.src} (ARCH={tree.arch})"
            raise usage_error(f"{a.where}: CONFIG_{a.name} is not a symbol of this kernel "
                              f"({tree.kernel_version}, ARCH={tree.arch})", hint=hint)
        kind = tree.type_of(a.name)
        _check_type(a, kind)
        typed.append(dataclasses.replace(a, quoted=True) if kind == "string" else a)
    return dataclasses.replace(fragments, assignments=tuple(typed))


def _explanation(facts: SymbolFacts, requested: str, modules_enabled: bool) -> Explanation:
    need = TRI_ORDER.get(requested, 2)
    unmet = tuple((t, v) for t, v in facts.depends_on if TRI_ORDER[v] < max(need, 1))
    return Explanation(
        type=facts.type, visibility=facts.visibility, assignable=facts.assignable,
        has_prompt=facts.has_prompt, unmet_depends=unmet, selected_by=facts.selected_by,
        modules_off=requested == "m" and facts.type == "tristate" and not modules_enabled,
        defined_at=facts.defined_at)


# --- check ---------------------------------------------------------------------------------------------


def running_config(proc: Path = Path("/proc/config.gz"), boot_dir: Path = Path("/boot")) -> Path:
    """The running kernel's config: /proc/config.gz if the kernel exposes it, else /boot/config-$(uname -r)."""
    if proc.is_file():
        return proc
    boot = boot_dir / f"config-{platform.release()}"
    if boot.is_file():
        return boot
    raise usage_error(f"--running: neither {proc} nor {boot} exists",
                      hint="give the kernel's config file with --config FILE")


def _satisfied(requested: str, result: str | None, strict: bool) -> bool:
    got = "n" if result is None and requested in TRI_ORDER else result
    if got == requested:
        return True
    return not strict and requested in ("y", "m") and got in ("y", "m")


def check_config(config: Path, models: Sequence[Model | str] = DEFAULT_MODELS, *,
                 kernel_src: Path | None = None, extra_fragments: Sequence[Path] = (),
                 strict: bool = False, arch: str | None = None) -> Report:
    """Does the kernel config `config` have the fragments' values? A requested y or m is met by y or m
    unless `strict`. With `kernel_src`, symbols are validated against its Kconfig tree and failures explained
    by their dependencies; without it, it is a plain comparison. Never writes anything."""
    config = Path(config)
    fragments = _fragment_set(models, extra_fragments)
    text = read_config_text(config)
    values = config_values(text)
    if not values:  # /dev/null, a README: not a config that lacks the watchdog, not a config at all
        what = "it is empty" if not text.strip() else "it has no CONFIG_ line (neither `CONFIG_X=...` nor " \
                                                      "`# CONFIG_X is not set`)"
        raise usage_error(f"--config {config}: not a kernel config: {what}",
                          hint="give a kernel .config (a tree's .config, /boot/config-*, /proc/config.gz)")
    tree = None
    if kernel_src is not None:
        tree = parse_tree(Path(kernel_src), arch)
        fragments = _validate(fragments, tree)
        tree.load_config_text(text, str(config))
    results = []
    for a in fragments.assignments:
        result = values.get(a.name)
        ok = _satisfied(a.value, result, strict)
        explanation = None
        if not ok and tree is not None:
            explanation = _explanation(tree.facts(a.name), a.value, tree.modules_enabled())
        results.append(SymbolResult(a.name, a.value, result, a.where, ok, explanation=explanation,
                                    drill_only=_drill_only(a)))
    report = Report("check", config, Path(kernel_src) if kernel_src else None, strict, fragments.files,
                    fragments.overrides, results, kernel_version=tree.kernel_version if tree else None)
    if not report.ok and tree is None:
        report.notes.append("give --kernel-src DIR (the kernel's source tree) to see why a value is missing")
    return report


# --- merge ---------------------------------------------------------------------------------------------


def _merged_text(base: str, assignments: Sequence[Assignment]) -> str:
    """merge_config.sh's way: drop the base's lines for the requested symbols, append the requests."""
    names = {a.name for a in assignments}
    kept = [line for line in base.splitlines()
            if _line_symbol(line) not in names]
    return "\n".join(kept + [a.config_line() for a in assignments]) + "\n"


def _line_symbol(line: str) -> str | None:
    line = line.strip()
    if line.startswith("CONFIG_") and "=" in line:
        return line[7:line.index("=")]
    if line.startswith("# CONFIG_") and line.endswith(" is not set"):
        return line[9:-11]
    return None


def _as_builtin(assignments: Sequence[Assignment]) -> list[Assignment]:
    return [dataclasses.replace(a, value="y") if a.value == "m" and not a.quoted else a for a in assignments]


def parse_tree(src: Path, arch: str | None) -> KconfigTree:
    """wdimage.kconfig.tree.parse_tree, imported here: a missing or mismatched kconfiglib is then a clean
    exit-2 message from the commands that parse a tree, and no concern of any other command."""
    try:
        from wdimage.kconfig.tree import parse_tree as parse
    except ImportError as e:
        raise usage_error(f"--kernel-src needs kconfiglib 14.1.0, which cannot be imported: {e}",
                          hint="reinstall wdimage, or: pip install kconfiglib==14.1.0") from None
    return parse(src, arch)


def _merge_result(tree: KconfigTree, a: Assignment, original: str) -> SymbolResult:
    result = tree.value(a.name)
    note = None
    if original != a.value:
        note = f"--builtin: requested {original}, asked for {a.value} (MODULES=n)"
    if result == a.value:
        return SymbolResult(a.name, a.value, result, a.where, True, note)
    facts = tree.facts(a.name)
    selected = [f"{sym} (={v})" for sym, _, v in facts.selected_by if v == "y"]
    if a.value == "m" and result == "y" and tree.modules_enabled() and selected:
        note = f"built in (=y) rather than m: selected by {', '.join(selected)}"
        return SymbolResult(a.name, a.value, result, a.where, True, note)
    explanation = _explanation(facts, a.value, tree.modules_enabled())
    return SymbolResult(a.name, a.value, result, a.where, False, note, explanation)


def merge_fragments(config: Path, models: Sequence[Model | str] = DEFAULT_MODELS, *,
                    kernel_src: Path = DEFAULT_KERNEL_SRC, output: Path | None = None, arch: str | None = None,
                    extra_fragments: Sequence[Path] = (), builtin: bool = False) -> Report:
    """Merge the fragments into `config` and resolve it against the Kconfig tree of `kernel_src`, as
    merge_config.sh + `make olddefconfig` do. Writes `output` (default: `config`, the previous file kept as
    .old) only if every requested value took effect; the Report says which did not, and why."""
    config = Path(config)
    output = Path(output) if output else config
    fragments = _fragment_set(models, extra_fragments)
    tree = parse_tree(Path(kernel_src), arch)
    fragments = _validate(fragments, tree)
    base = read_config_text(config)
    requests = list(fragments.assignments)
    tree.load_config_text(_merged_text(base, requests), str(config))
    if builtin and not tree.modules_enabled():
        requests = _as_builtin(requests)
        tree.load_config_text(_merged_text(base, requests), str(config))
    originals = {a.name: a.value for a in fragments.assignments}
    results = [dataclasses.replace(_merge_result(tree, a, originals[a.name]), drill_only=_drill_only(a))
               for a in requests]
    report = Report("merge", config, tree.src, True, fragments.files, fragments.overrides, results,
                    output=output, kernel_version=tree.kernel_version)
    if report.ok:
        write_keeping_old(output, tree.config_text())
        report.written = True
    return report


def write_keeping_old(path: Path, text: str) -> None:
    """Write `path` through a temporary file and a rename; an existing file is kept as `path`.old first."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise usage_error(f"--output {path}: directory {directory} does not exist")
    try:
        mode = default_mode()
        if path.exists():
            shutil.copy2(path, path.with_name(path.name + ".old"))
            mode = stat.S_IMODE(path.stat().st_mode)
        write_atomically(path, text, mode)
    except OSError as e:
        raise usage_error(f"--output {path}: cannot write it: {e.strerror}") from None
    log.info(f"wrote {path}")
