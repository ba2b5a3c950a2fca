"""Only the data files live here (everything else is in pyproject.toml): elements/ and kconfig-fragments/,
installed under <prefix>/share/wdimage/ (found by wdimage.datadir). setuptools' install_data keeps each
file's mode, so the elements' phase scripts stay executable in the wheel and after `pip install`
(package-data would not). pyproject.toml's data-files table cannot walk a tree, hence this file."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def tree(top: str) -> list[tuple[str, list[str]]]:
    """(install directory, files) for every directory under `top`, as data_files wants them."""
    entries = []
    for directory in sorted(p for p in [HERE / top, *(HERE / top).rglob("*")] if p.is_dir()):
        files = sorted(str(f.relative_to(HERE)) for f in directory.iterdir() if f.is_file())
        if files and "__pycache__" not in directory.parts:
            entries.append((str(Path("share", "wdimage", directory.relative_to(HERE))), files))
    return entries


setup(data_files=tree("elements") + tree("kconfig-fragments"))
