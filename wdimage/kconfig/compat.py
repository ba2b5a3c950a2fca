"""Teach kconfiglib 14.1.0 the Kconfig of current kernels, faithfully to their own scripts/kconfig.

kconfiglib 14.1.0 (the newest on PyPI) stops on Linux 6.1 and 7.2 as shipped, and resolves some configs
differently from `make olddefconfig`. This module fills the gaps for that exact version only (the pinned
file's SHA-256 is checked, and a different kconfiglib is refused loudly: the patches rely on its internals).

Syntax:
- the bare `modules` property (kernel/module/Kconfig), which replaced `option modules` in Linux 5.15;
- `transitional` (Linux 6.18+): a symbol read from an old .config to feed the defaults of its successor,
  always visible to its user value, never written out (symbol.c, SYMBOL_TRANS);
- macro arguments containing `$(comma)`: the C preprocessor splits a call's arguments on the raw text, then
  expands each; kconfiglib expanded nested calls first, so `$(as-instr,a$(comma)b)` lost `b`, and
  `$(error-if,cond,Sorry$(comma) ...)` failed with "bad number of arguments" (error-if itself then works);
- conditional dependencies `depends on X if Y` (Linux 7.x, drivers/usb/cdns3/Kconfig), which menu.c turns
  into `X || (Y = n)`, the `= n` pushed through Y's operators as expr_trans_compare() does.

Semantics (each checked against the kernel's own conf by tests/real; where Linux changed, the tree's
scripts/kconfig sources say which behaviour applies: wdimage.kconfig.tree.kconfig_generation()):
- an implied symbol whose own dependencies are unmet is still written ("is not set") when an implying
  symbol is on (symbol.c sets SYMBOL_WRITE; kconfiglib did not: 7.2's NVMEM_LAYOUTS);
- `imply` of y does not promote a user's m to y (kconfiglib kept that rule of older scripts/kconfig);
- int_default_zero: an int/hex symbol with no user value and no active default is "0"/"0x0" (Linux 6.10+),
  not "" (ARCH_FORCE_MAX_ORDER = 0 in mm/Kconfig depends on it);
- menu_choices (Linux 6.11+, symbol.c's sym_calc_choice): the `if` of a choice's prompt no longer hides its
  members, only the choice's dependencies do (`prompt "Memory split" if EXPERT` still writes VMSPLIT_3G=y),
  and the member chosen is the last one read as y, else the default unless read as n, else the first one
  not read, else the one read first;
- clamp_user_ints: an int/hex user value outside the active range is kept and clamped to the range's bound
  (sym_validate_range), where 6.1's confdata.c dropped it for the default (as kconfiglib does).

Only wdimage.kconfig.tree imports this module (and through it, kconfiglib).
"""

import hashlib
from pathlib import Path

import kconfiglib

from wdimage.errors import WdimageError

PINNED_VERSION = (14, 1, 0)
# SHA-256 of the pinned kconfiglib.py; the patches below rely on its private methods.
PINNED_SHA256 = "d81c16ca77a451e52e93c99d39ad9451d645506450766c9a6b7193d55c439103"


class IncompatibleKconfiglib(WdimageError):
    """The installed kconfiglib is not the pinned one: a usage error (exit 2) of the commands that import this
    module (only those that parse a Kconfig tree do)."""


def installed_sha256() -> str:
    return hashlib.sha256(Path(kconfiglib.__file__).read_bytes()).hexdigest()


def check_pinned() -> None:
    """Raise if the installed kconfiglib is not the exact file these patches were written against."""
    version = tuple(getattr(kconfiglib, "VERSION", ()))
    if version != PINNED_VERSION or installed_sha256() != PINNED_SHA256:
        raise IncompatibleKconfiglib(
            f"wdimage's Kconfig compatibility layer supports kconfiglib {'.'.join(map(str, PINNED_VERSION))} "
            f"exactly (sha256 {PINNED_SHA256[:12]}), found {kconfiglib.__file__} version {version} "
            f"(sha256 {installed_sha256()[:12]})", hint="reinstall with: pip install kconfiglib==14.1.0")


def _property_line(line: str) -> str:
    """The property keyword alone on a Kconfig line, without a trailing comment ('' if none)."""
    return line.split("#", 1)[0].strip()


class CompatKconfig(kconfiglib.Kconfig):
    """kconfiglib.Kconfig that also parses `modules`, `transitional` and comma-carrying macro arguments."""

    def __init__(self, *args, int_default_zero: bool = False, menu_choices: bool = False,
                 imply_promotes_m: bool = False, clamp_user_ints: bool = False, **kwargs):
        self.transitional: set[kconfiglib.Symbol] = set()
        self.int_default_zero = int_default_zero
        self.menu_choices = menu_choices
        self.imply_promotes_m = imply_promotes_m
        self.clamp_user_ints = clamp_user_ints
        self.choice_reads: dict = {}  # choice member -> order in which the loaded .config assigned it
        self._props_node = None
        super().__init__(*args, **kwargs)

    def load_config(self, *args, **kwargs):
        self.choice_reads = {}
        return super().load_config(*args, **kwargs)

    # --- bare `modules` and `transitional` properties -------------------------------------------------

    def _parse_props(self, node):
        self._props_node = node
        try:
            return super()._parse_props(node)
        finally:
            self._props_node = None

    def _tokenize(self, s):
        prop = _property_line(s)
        if self._props_node is not None and prop in ("modules", "transitional"):
            item = self._props_node.item
            if item.__class__ is not kconfiglib.Symbol:
                self._parse_error(f"'{prop}' is only valid for symbols")
            if prop == "modules":
                # Same as the old `option modules`, which kconfiglib handles (it assumes MODULES).
                self._line = s
                return (kconfiglib._T_OPTION, kconfiglib._T_MODULES, None)
            self.transitional.add(item)
            return (None,)  # a blank line for the property parser
        return super()._tokenize(s)

    # --- `depends on X if Y` ------------------------------------------------------------------------------

    def _expect_expr_and_eol(self):
        if self._tokens[0] is not kconfiglib._T_DEPENDS:
            return super()._expect_expr_and_eol()
        dep = self._parse_expr(True)
        if self._tokens[self._tokens_i] is kconfiglib._T_IF:
            self._tokens_i += 1
            cond = self._parse_expr(True)
            dep = (kconfiglib.OR, dep, self._compare_n(cond, equal=True))
        if self._tokens[self._tokens_i] is not None:
            self._trailing_tokens_error()
        return dep

    def _compare_n(self, e, equal):
        """`e = n` (or `e != n`) as scripts/kconfig/expr.c's expr_trans_compare(e, E_EQUAL, &symbol_no)."""
        if e.__class__ is not tuple:  # a symbol or choice
            return (kconfiglib.EQUAL if equal else kconfiglib.UNEQUAL, e, self.n)
        op = e[0]
        if op in (kconfiglib.AND, kconfiglib.OR):
            swapped = kconfiglib.OR if op is kconfiglib.AND else kconfiglib.AND
            res = (swapped, self._compare_n(e[1], True), self._compare_n(e[2], True))
            return res if equal else (kconfiglib.NOT, res)
        if op is kconfiglib.NOT:
            return self._compare_n(e[1], not equal)
        return (kconfiglib.NOT, e) if equal else e  # a comparison is y or n: (A = B) = n is !(A = B)

    # --- macro calls: split the raw arguments first, expand each one after -----------------------------

    def _expand_macro(self, s, i, args):
        res = s[:i]
        i += 2  # past "$("
        arg_start = i
        raw_args = []
        nesting = 0
        while True:
            match = kconfiglib._macro_special_search(s, i)
            if not match:
                self._parse_error("missing end parenthesis in macro expansion")
            token = match.group()
            i = match.end()
            if token in ("(", "$("):
                nesting += 1
            elif token == ")":
                if nesting:
                    nesting -= 1
                    continue
                raw_args.append(s[arg_start:match.start()])
                break
            elif not nesting:  # "," at this call's level
                raw_args.append(s[arg_start:match.start()])
                arg_start = i
        call = [self._expand_whole(arg, args) for arg in raw_args]
        res += self._macro_value(call, args)
        return res + s[i:], len(res)

    def _macro_value(self, call, args):
        # $(1), $(2)...: the arguments of the macro being expanded, as scripts/kconfig/preprocess.c does.
        if len(call) == 1 and call[0].isdigit() and 0 < int(call[0]) < len(args):
            return args[int(call[0])]
        return self._fn_val(call)


def _is_transitional(sc) -> bool:
    return sc in getattr(sc.kconfig, "transitional", ())


_original_visibility = kconfiglib._visibility
_original_config_string = kconfiglib.Symbol.config_string
_original_str_value = kconfiglib.Symbol.str_value
_original_tri_value = kconfiglib.Symbol.tri_value
_original_set_value = kconfiglib.Symbol.set_value
_original_selection = kconfiglib.Choice._selection


def _visibility(sc):
    # A transitional symbol takes its user value like a visible one (symbol.c: sym->visible = yes).
    if _is_transitional(sc):
        return 2
    if sc.__class__ is kconfiglib.Choice and getattr(sc.kconfig, "menu_choices", False):
        # 6.11+: a choice is a menu; its members are hidden by its dependencies, not by its prompt's `if`.
        return max((kconfiglib.expr_value(node.dep) for node in sc.nodes), default=0)
    return _original_visibility(sc)


def _config_string(sym):
    # ... but is never written to a .config (symbol.c clears SYMBOL_WRITE).
    if _is_transitional(sym):
        return ""
    text = _original_config_string.fget(sym)
    if (not text and sym.orig_type in (kconfiglib.BOOL, kconfiglib.TRISTATE) and not sym.choice
            and sym.nodes and kconfiglib.expr_value(sym.weak_rev_dep)):
        # symbol.c: `if (sym->implied.tri != no) sym->flags |= SYMBOL_WRITE;`, whatever its dependencies.
        return f"# {sym.kconfig.config_prefix}{sym.name} is not set\n" if sym.tri_value == 0 else \
            f"{sym.kconfig.config_prefix}{sym.name}={sym.str_value}\n"
    return text


def _str_value(sym):
    if sym._cached_str_val is not None:
        return sym._cached_str_val
    val = _original_str_value.fget(sym)
    if (sym.orig_type in (kconfiglib.INT, kconfiglib.HEX) and sym.user_value is not None
            and getattr(sym.kconfig, "clamp_user_ints", False) and sym.visibility):
        val = sym._cached_str_val = _clamped_user_value(sym, val)
    if (val == "" and sym.orig_type in (kconfiglib.INT, kconfiglib.HEX)
            and getattr(sym.kconfig, "int_default_zero", False)
            and not (sym.user_value and sym.visibility)
            and not any(kconfiglib.expr_value(cond) for _, cond in sym.defaults)):
        # symbol.c (6.10+): `case S_INT: newval.val = "0"; case S_HEX: newval.val = "0x0";`
        val = sym._cached_str_val = "0" if sym.orig_type is kconfiglib.INT else "0x0"
    return val


def _clamped_user_value(sym, val: str) -> str:
    """sym_validate_range() on the user value: kept if in the active range, else that range's bound."""
    active = next(((low, high) for low, high, cond in sym.ranges if kconfiglib.expr_value(cond)), None)
    base = 10 if sym.orig_type is kconfiglib.INT else 16
    if active is None or not kconfiglib._is_base_n(sym.user_value, base):
        return val
    def number(text):
        return int(text, base) if kconfiglib._is_base_n(text, base) else 0  # strtoll() of "" is 0
    user = number(sym.user_value)
    if user < number(active[0].str_value):
        return active[0].str_value
    if user > number(active[1].str_value):
        return active[1].str_value
    return sym.user_value


def _tri_value(sym):
    if sym._cached_tri_val is not None:
        return sym._cached_tri_val  # already corrected, if it needed to be
    val = _original_tri_value.fget(sym)
    if (val == 2 and not sym.choice and sym.orig_type is kconfiglib.TRISTATE and sym.type is kconfiglib.TRISTATE
            and not getattr(sym.kconfig, "imply_promotes_m", True)
            and kconfiglib.expr_value(sym.weak_rev_dep) == 2 and _unpromoted_tri(sym) == 1):
        val = sym._cached_tri_val = 1
    return val


def _unpromoted_tri(sym) -> int:
    """kconfiglib's tri_value for a non-choice tristate, without its `imply ... = y` promotion of m."""
    vis = sym.visibility
    if vis and sym.user_value is not None:
        val = min(sym.user_value, vis)
    else:
        val = 0
        for default, cond in sym.defaults:
            dep_val = kconfiglib.expr_value(cond)
            if dep_val:
                val = min(kconfiglib.expr_value(default), dep_val)
                break
        if kconfiglib.expr_value(sym.direct_dep):
            val = max(kconfiglib.expr_value(sym.weak_rev_dep), val)
    return max(kconfiglib.expr_value(sym.rev_dep), val)


def _set_value(sym, value):
    ok = _original_set_value(sym, value)
    reads = getattr(sym.kconfig, "choice_reads", None)
    if ok and sym.choice is not None and reads is not None:
        reads.pop(sym, None)
        reads[sym] = len(reads)  # confdata.c: list_move() to the front of the choice's priority list
    return ok


def _choice_selection(choice):
    """The selected member as Linux 6.11+'s sym_calc_choice() picks it."""
    kconf = choice.kconfig
    if not getattr(kconf, "menu_choices", False):
        return _original_selection(choice)
    if choice.tri_value != 2:
        return None
    reads = kconf.choice_reads
    members = list(choice.syms)
    read = sorted((s for s in members if s in reads), key=lambda s: -reads[s])
    priority = read + [s for s in members if s not in reads]
    for sym in priority:
        if sym.visibility and sym.user_value == 2:
            return sym
    default = next((sym for sym, cond in choice.defaults if kconfiglib.expr_value(cond) and sym.visibility),
                   next((sym for sym in members if sym.visibility), None))
    if default is not None and default.user_value != 0:
        return default
    for sym in members:
        if sym.visibility and sym.user_value is None:
            return sym
    return next((sym for sym in reversed(priority) if sym.visibility), None)


def install() -> None:
    """Check the pinned version and patch the two module-level behaviours transitional symbols need."""
    check_pinned()
    kconfiglib._visibility = _visibility
    kconfiglib.Symbol.config_string = property(_config_string, doc=_original_config_string.__doc__)
    kconfiglib.Symbol.str_value = property(_str_value, doc=_original_str_value.__doc__)
    kconfiglib.Symbol.tri_value = property(_tri_value, doc=_original_tri_value.__doc__)
    kconfiglib.Symbol.set_value = _set_value
    kconfiglib.Choice._selection = _choice_selection


install()
