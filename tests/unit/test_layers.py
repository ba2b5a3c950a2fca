"""The packages' layering (ARCHITECTURE.md): every wdimage import, lazy ones in functions too, runs downwards."""

import ast
from pathlib import Path

import wdimage

PACKAGE = Path(wdimage.__file__).parent
FOUNDATION = {"models", "run", "fileio", "jsonfile", "datadir", "errors", "log", "templating", "__init__"}
# What each layer may import besides itself and the foundation.
ALLOWED = {
    "vm": set(),
    "kconfig": set(),
    "image": {"kconfig", "vm"},
    "drill": {"image", "kconfig", "vm"},
    "ci": {"image", "drill"},
    "audit": {"image", "kconfig", "vm", "drill"},
    "commands": {"image", "kconfig", "vm", "drill", "ci", "audit"},
}


def _layer(module: str) -> str:
    """`wdimage.image.distros.debian` -> image; `wdimage.run` -> run."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("wdimage"):
            if node.module == "wdimage":
                found += [(node.lineno, f"wdimage.{alias.name}" if _is_module(alias.name) else "wdimage")
                          for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("wdimage.")]
    return found


def test_no_import_runs_back_up_the_layers():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if layer in FOUNDATION - {"__init__"} or layer in ("cli", "__main__", "__init__", "docs"):
            allowed = FOUNDATION if layer in FOUNDATION else None  # cli/__main__: anything
        else:
            allowed = FOUNDATION | ALLOWED[layer] | {layer}
        if allowed is None:
            continue
        for line, module in _imports(path):
            if _layer(module) not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {layer} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_layer_table_knows_every_package():
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == set(ALLOWED), packages
