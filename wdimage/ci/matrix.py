"""The CI build matrix as data, and the index that gathers a matrix run's results.

The matrix is distro x architecture x watchdog model (the architectures each distro builds, the models that exist
on each architecture: wdimage.models), minus the cells excluded below (each with its reason). CI reads it from
`wdimage matrix --json` (GitHub: `fromJSON` in a setup job), so the workflow cannot drift from this table.
The index reads each output directory's manifest.json (and the drill's drill.json beside it) into one JSON
document and one Markdown table.
"""

import dataclasses
from pathlib import Path

from wdimage.image import distros
from wdimage.image.manifest import Files, read_manifest
from wdimage.image.platforms import PLATFORMS
from wdimage.jsonfile import DRILL_REPORT as DRILL_REPORT_JSON
from wdimage.jsonfile import INDEX
from wdimage.models import Action, Arch, Cannot, Model, info, models_on, platform_words

DISTROS = tuple(distros.DISTROS)  # the distros `wdimage build` knows, in its registry's order
DRILL_REPORT = "drill.json"  # what CI passes to `wdimage drill DIR --json`, beside manifest.json

# (distro, model) -> why it is not built. Everything else is built (and drilled, see DRILL_NOTE).
# Not a reason here: a distro kernel without the driver. Debian bookworm's kernel has all three as modules
# (seen in a real build's kernel config); RHEL's kernel configs, which CentOS Stream builds, keep i6300esb and
# ib700 as "device modelled by qemu, do not remove"; and the build checks the image's own kernel config.
EXCLUDED: dict[tuple[str, Model], str] = {
    ("gentoo", Model.IB700): (
        "a Gentoo image compiles its packages from source on the runner (the slowest cell by far, not measured "
        "here); one Gentoo cell with the default model covers the OpenRC path, and the model only changes "
        "files the Debian cells already test"),
    ("gentoo", Model.ITCO): (
        "as gentoo/ib700: the Gentoo cost buys nothing a Debian itco cell and the Gentoo i6300esb cell "
        "do not already show"),
}

# The hosted runner of each architecture's cells: arm64 ones build natively on GitHub's arm64 runners.
RUNNERS: dict[Arch, str] = {Arch.X86_64: "ubuntu-24.04", Arch.ARM64: "ubuntu-24.04-arm"}
NO_RUNNER = ("GitHub offers no s390x runner; wdimage builds s390x through qemu-user-static and drills it under TCG "
             "on an x86 machine (docs/architectures.md), slower than a CI job should be")

# Hosted runners boot guests: KVM where the runner exposes it, otherwise TCG (the drill probes and falls back).
DRILL_NOTE = "hosted runner: KVM if usable, else TCG (no nested KVM guarantee)"
CI_ACTION = Action.RESET  # CI builds with `wdimage build`'s default action


@dataclasses.dataclass(frozen=True)
class Cell:
    distro: str
    model: Model
    built: bool
    drill: bool
    why: str  # why it is excluded, or how it is drilled
    arch: Arch = Arch.X86_64

    @property
    def name(self) -> str:
        """distro-model on x86_64 (the names CI has always used), distro-arch-model elsewhere."""
        return f"{self.distro}-{self.model}" if self.arch is Arch.X86_64 else f"{self.distro}-{self.arch}-{self.model}"

    @property
    def platforms(self) -> list[str]:
        """The platform files (wdimage.image.platforms) its build writes and CI publishes with the image."""
        return [p.name for p in PLATFORMS if not isinstance(platform_words(p.name, self.model, CI_ACTION), Cannot)]


def _exclusion(distro: str, arch: Arch, model: Model) -> str | None:
    if info(model).refused:
        return f"refused: {info(model).refused}"
    if arch not in RUNNERS:
        return NO_RUNNER
    return EXCLUDED.get((distro, model)) if arch is Arch.X86_64 else None


def cells(arch: Arch | None = None) -> list[Cell]:
    """Every distro x architecture x model cell (`arch`: that architecture's only), built or not, in matrix
    order: the architectures each distro builds, the models that exist on each."""
    result = []
    for distro in DISTROS:
        for arch_ in distros.get(distro).arches:
            if arch is not None and arch_ is not arch:
                continue
            for model in models_on(arch_):
                reason = _exclusion(distro, arch_, model)
                result.append(Cell(distro, model, built=reason is None, drill=reason is None,
                                   why=reason or DRILL_NOTE, arch=arch_))
    return result


def build_matrix(arch: Arch | None = None) -> dict:
    """The matrix for CI: GitHub's `strategy.matrix` shape, {"include": [{distro, model, ...}, ...]}.

    `release` is the distro's default release, what `wdimage build DISTRO` builds: part of the CI cache key;
    `minutes` the time its job may take (the distro's ci_minutes); `runner` the hosted runner of the cell's
    architecture.
    """
    return {"include": [
        {"name": cell.name, "distro": cell.distro, "release": distros.get(cell.distro).default_release,
         "model": str(cell.model), "arch": str(cell.arch), "runner": RUNNERS[cell.arch], "drill": cell.drill,
         "minutes": distros.get(cell.distro).ci_minutes}
        for cell in cells(arch) if cell.built
    ]}


def render_matrix_text(arch: Arch | None = None) -> str:
    lines = [f"{'cell':<24} {'CI':<12} {'platform files':<17} why / how"]
    for cell in cells(arch):
        state = "build+drill" if cell.drill else ("build" if cell.built else "excluded")
        files = "+".join(cell.platforms) if cell.built and cell.platforms else "-"
        lines.append(f"{cell.name:<24} {state:<12} {files:<17} {cell.why}")
    return "\n".join(lines)


# --- the index of a matrix run -----------------------------------------------------------------------------

def load_result(directory: Path) -> dict:
    """One row of the index: what DIR/manifest.json and DIR/drill.json say about the image."""
    manifest = read_manifest(directory, "pass build output directories (each holds manifest.json)")
    report = directory / DRILL_REPORT
    drill = DRILL_REPORT_JSON.read(report) if report.exists() else None
    packages = manifest.packages or {}
    files = manifest.files or Files()
    return {
        "directory": directory.name,
        "name": manifest.name,
        "distro": manifest.distro,
        "release": manifest.release,
        "model": manifest.model and str(manifest.model),
        "arch": str(manifest.arch or Arch.X86_64),
        "action": manifest.action and str(manifest.action),
        "timeout": manifest.timeout,
        "versions": {role: packages[role].version for role in sorted(packages)},
        "image": files.image,
        "image_sha256": (manifest.checksums or {}).get(files.image or ""),
        "sbom": files.sbom,
        # KubeVirt/Proxmox VE files published with the image, or why the build left one out
        "platforms": {name: dict(outcome) for name, outcome in (manifest.platforms or {}).items()},
        "build_seconds": manifest.build.seconds if manifest.build else None,
        "drill": _drill_summary(drill),
    }


def build_index(directories: list[Path]) -> dict:
    """The index of several output directories, sorted by image name."""
    rows = [load_result(d) for d in directories]
    rows.sort(key=lambda row: (row["distro"] or "", row["model"] or "", row["name"] or ""))
    return {"schema": INDEX.schema, "images": rows}


def render_index_markdown(index: dict) -> str:
    lines = [
        "| image | distro | model | action / timeout | kernel | watchdog | platform files | drill | reset after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in index["images"]:
        drill = row["drill"]
        resets = ", ".join(f"{f['fault']} {f['seconds_to_reset']} s" for f in drill["faults"]
                           if f.get("seconds_to_reset") is not None) or "-"
        lines.append("| " + " | ".join(cell_text(v) for v in (
            row["name"], f"{row['distro']} {row['release'] or ''}".strip(),
            row["model"] if row.get("arch", "x86_64") == "x86_64" else f"{row['model']} ({row['arch']})",
            f"{row['action']} / {row['timeout']} s", row["versions"].get("kernel"),
            row["versions"].get("watchdog"), _platforms_text(row.get("platforms") or {}), _drill_text(drill),
            resets)) + " |")
    return "\n".join(lines) + "\n"


def _platforms_text(platforms: dict) -> str:
    return ", ".join(name if "file" in outcome else f"{name}: left out" for name, outcome in platforms.items())


def _drill_summary(drill: dict | None) -> dict:
    if drill is None:
        return {"result": "not run", "accel": None, "faults": []}
    faults = [{"fault": f.get("fault"), "passed": f.get("passed"), "seconds_to_reset": f.get("seconds_to_reset")}
              for f in drill.get("faults") or []]
    result = "passed" if drill.get("passed") else "FAILED"
    return {"result": result, "accel": drill.get("accel"), "faults": faults, "error": drill.get("error")}


def _drill_text(drill: dict) -> str:
    return f"{drill['result']} ({drill['accel']})" if drill.get("accel") else drill["result"]


def cell_text(value) -> str:
    """A Markdown table cell: no pipes or newlines from the data can break the table."""
    return "-" if value in (None, "") else str(value).replace("|", "\\|").replace("\n", " ")
