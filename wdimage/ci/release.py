"""What a tagged CI run publishes: the images whose drill passed, and every other matrix cell with the reason.

A release is for people who download an image and trust that its watchdog resets the guest; an image whose
drill failed or did not run has not shown that, so it is left out. One failed cell does not hold back the
others: the release carries the drilled images and its notes list each cell that is missing and why.
"""

import re

from wdimage.ci import matrix

# An output directory's name as the CI files make it (`--name DISTRO-MODEL`, build.NAME_RE): safe as a path
# component and a shell word for the release steps that pack it.
DIRECTORY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
NO_OUTPUT = "no output: the build failed, timed out or was cancelled (the run's log and logs-CELL artifact say why)"


def release_plan(index: dict, cells: list[dict] | None = None) -> dict:
    """{"publish": [directory names], "withheld": [{"name", "why"}]} for an index (matrix.build_index) of the
    output directories a run produced, against the cells the matrix expected (default: matrix.build_matrix)."""
    cells = matrix.build_matrix()["include"] if cells is None else cells
    publish, withheld, seen = [], [], set()
    for row in index["images"]:
        name = row.get("name") or row["directory"]
        seen.add(name)
        why = _why_withheld(row)
        if why is None:
            publish.append(row["directory"])
        else:
            withheld.append({"name": name, "why": why})
    withheld += [{"name": cell["name"], "why": NO_OUTPUT} for cell in cells if cell["name"] not in seen]
    return {"publish": publish, "withheld": withheld}


def _why_withheld(row: dict) -> str | None:
    if not DIRECTORY_RE.fullmatch(row["directory"]):
        return f"its output directory name {row['directory']!r} is not a plain image name"
    drill = row["drill"]
    if drill["result"] == "passed":
        return None
    if drill["result"] == "not run":
        return "not drilled: no drill.json beside the image"
    failed = [f["fault"] for f in drill["faults"] if not f.get("passed")]
    detail = f" ({', '.join(map(str, failed))})" if failed else (f" ({drill['error']})" if drill.get("error") else "")
    return f"the drill FAILED{detail}"


def render_release_notes(index: dict, plan: dict) -> str:
    """The release notes: the published images as the index table, then the cells left out and why."""
    published = set(plan["publish"])
    rows = [row for row in index["images"] if row["directory"] in published]
    total = len(plan["publish"]) + len(plan["withheld"])
    lines = [f"Published: {len(rows)} of {total} images, each one whose watchdog drill passed.", ""]
    if rows:
        lines.append(matrix.render_index_markdown({"images": rows}).rstrip("\n"))
        lines.append("")
    if plan["withheld"]:
        lines += ["Not published:", "", "| image | why |", "|---|---|"]
        lines += [f"| {matrix.cell_text(w['name'])} | {matrix.cell_text(w['why'])} |" for w in plan["withheld"]]
    else:
        lines.append("Every cell of the matrix was built and passed its drill.")
    return "\n".join(lines) + "\n"
