"""Is the chosen watchdog driver's module in the image, for its kernel release, with what it needs?

The kernel config check says the driver was built; this says it was installed. On EL9 the two differ: the
drivers live in kernel-core, but lpc_ich, which creates the iTCO device on q35, lives in kernel-modules, which
cloud images leave out. The wdimage-watchdog element records the image's module tree (finalise.d/97-wdimage-watchdog-modules:
modules.dep, modules.builtin and the module files present); the same check runs on a root directory.
"""

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from wdimage.errors import failure
from wdimage.models import Model, info

# Modules a model needs besides its driver: on q35, lpc_ich registers the iTCO platform device that
# iTCO_wdt drives (no symbol dependency, so modules.dep does not list it).
COMPANIONS: dict[Model, tuple[str, ...]] = {Model.ITCO: ("lpc_ich",)}

RECORD_DEP = "wdimage-modules.dep"
RECORD_BUILTIN = "wdimage-modules.builtin"
RECORD_FILES = "wdimage-modules.files"

_SUFFIX = re.compile(r"\.ko(\.xz|\.zst|\.gz)?$")


def module_name(path: str) -> str:
    """modprobe's name for a module file: `kernel/drivers/mfd/lpc_ich.ko.xz` -> `lpc_ich` ('-' read as '_')."""
    return _SUFFIX.sub("", path.rsplit("/", 1)[-1]).replace("-", "_")


@dataclasses.dataclass(frozen=True)
class ModuleTree:
    """One kernel release's module index and a way to ask whether a module file is present."""

    release: str
    dep: dict[str, tuple[str, ...]]  # module file (relative to /lib/modules/RELEASE) -> its dependencies
    builtin: frozenset[str]  # module names built into the kernel
    present: Callable[[str], bool]

    @classmethod
    def parse(cls, release: str, dep_text: str, builtin_text: str, present: Callable[[str], bool]) -> "ModuleTree":
        dep = {}
        for line in dep_text.splitlines():
            if ":" in line:
                path, deps = line.split(":", 1)
                dep[path.strip()] = tuple(deps.split())
        builtin = frozenset(module_name(line.strip()) for line in builtin_text.splitlines() if line.strip())
        return cls(release, dep, builtin, present)

    @classmethod
    def from_root(cls, root: Path, release: str) -> "ModuleTree":
        """From a root file system tree (a scratch root, a mounted image)."""
        base = root / "lib/modules" / release
        return cls.parse(release, _read(base / "modules.dep"), _read(base / "modules.builtin"),
                         lambda path: (base / path).is_file())

    @classmethod
    def from_records(cls, manifests: Path, release: str) -> "ModuleTree":
        """From what the wdimage-watchdog element recorded in DIB's manifest directory."""
        files = frozenset(_read(manifests / RECORD_FILES).split())
        return cls.parse(release, _read(manifests / RECORD_DEP), _read(manifests / RECORD_BUILTIN),
                         files.__contains__)

    def find(self, name: str) -> str | None:
        return next((path for path in self.dep if module_name(path) == name.replace("-", "_")), None)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def required_modules(model: Model) -> tuple[str, ...]:
    return (info(model).module, *COMPANIONS.get(model, ()))


def check_modules(tree: ModuleTree, model: Model, provider_hint: str = "") -> dict:
    """Each module the model needs, built in or present with its modules.dep dependencies; a failure
    naming what is missing otherwise. Returns the record for the manifest."""
    record: dict = {"release": tree.release, "modules": {}}
    problems = []
    for name in required_modules(model):
        if name.replace("-", "_") in tree.builtin:
            record["modules"][name] = {"builtin": True}
            continue
        path = tree.find(name)
        if path is None:
            problems.append(f"{name}: not in modules.dep or modules.builtin of {tree.release}")
            continue
        missing = [p for p in (path, *tree.dep[path]) if not tree.present(p)]
        if missing:
            problems.append(f"{name}: {', '.join(missing)} listed in modules.dep but absent from "
                            f"/lib/modules/{tree.release}")
            continue
        record["modules"][name] = {"file": path, "depends": list(tree.dep[path])}
    if problems:
        why = "; on q35, lpc_ich creates the iTCO device" if model is Model.ITCO else ""
        raise failure(f"the image lacks the kernel module(s) the {model} watchdog needs{why}:\n  "
                      + "\n  ".join(problems),
                      hint=provider_hint or "install the package that ships them, or choose another --model")
    return record
