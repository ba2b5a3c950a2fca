"""The documentation stays true to the code: the generated tables match the model rows, and every `wdimage`
command line in a fenced code block of README.md, docs/*.md and the Makefile parses with the real argument
parser (wdimage/cli.py), its --fault names included."""

import re
import shlex
from pathlib import Path

import pytest

from wdimage import cli, docs
from wdimage.drill.scenarios import SCENARIOS
from wdimage.models import MODELS

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Shell variables the CI lines use, given a value each so that the line parses as the shell would run it.
VARIABLES = {"DISTRO": "debian", "MODEL": "i6300esb", "BIN": ".venv/bin", "DEMO_FAULTS": "panic"}
_COMMAND = re.compile(r"^(?:\S*/)?wdimage$")


def _fenced_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of each line in a fenced code block, continuations joined."""
    out, inside, pending, start = [], False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            inside = not inside
            continue
        if not inside:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    return out


def _makefile_lines(text: str) -> list[tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.startswith("\t")]


OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}
REDIRECTS = {">", ">>", "<", "2>", "&>"}


def _argvs(line: str) -> list[list[str]]:
    """The arguments of each `wdimage` command in a shell line (the command word first in its command)."""
    if not re.search(r"(^|[\s/])wdimage(\s|$)", line):
        return []
    line = re.sub(r"\$\(foreach f,\$\(DEMO_FAULTS\),--fault \$\(f\)\)", "--fault panic", line)
    line = re.sub(r"\$\([^()]*\)", "X", line)  # $(uname -r), $(jq ...): some word
    for name, value in VARIABLES.items():
        line = line.replace(f"${{{name}}}", value).replace(f"$({name})", value).replace(f"${name}", value)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], [[]]
    for token in lexer:
        if token in OPERATORS:
            current.append([])
        else:
            current[-1].append(token)
    for words in current:
        if words and _COMMAND.match(words[0]):
            argv = []
            for word in words[1:]:
                if word in REDIRECTS:
                    break
                argv.append(word)
            commands.append(argv)
    return commands


def _command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCUMENTS:
        for number, line in _fenced_lines(path.read_text()):
            found += [(f"{path.relative_to(ROOT)}:{number}", argv) for argv in _argvs(line)]
    for number, line in _makefile_lines((ROOT / "Makefile").read_text()):
        found += [(f"Makefile:{number}", argv) for argv in _argvs(line)]
    return found


COMMAND_LINES = _command_lines()


def test_the_documents_have_command_lines_to_check():
    places = {where.split(":")[0] for where, _ in COMMAND_LINES}
    assert {"README.md", "docs/drill.md", "docs/ci.md", "Makefile"} <= places
    assert len(COMMAND_LINES) > 30


@pytest.mark.parametrize("where, argv", COMMAND_LINES, ids=[w for w, _ in COMMAND_LINES])
def test_each_documented_command_line_parses(where, argv, capsys):
    try:
        args = cli.make_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: wdimage {shlex.join(argv)}: {capsys.readouterr().err.strip()}")
    for fault in getattr(args, "fault", None) or []:
        assert fault == "all" or fault in SCENARIOS, f"{where}: --fault {fault}"


def test_a_wrong_command_line_would_be_caught():
    """The extraction finds a line in a fenced block, and the parser refuses a misspelt option."""
    text = "text\n```\nwdimage drill out/x --faults panic   # a comment\n.venv/bin/wdimage build debian \\\n" \
           "    --model ib700 > log\n```\nwdimage not in a block\n"
    lines = [argv for _, line in _fenced_lines(text) for argv in _argvs(line)]
    assert lines == [["drill", "out/x", "--faults", "panic"], ["build", "debian", "--model", "ib700"]]
    assert _argvs("pipx install /path/to/wdimage && wdimage matrix --json | jq .") == [["matrix", "--json"]]
    with pytest.raises(SystemExit):
        cli.make_parser().parse_args(lines[0])


def test_the_generated_tables_match_the_rows():
    assert docs.main(["--check", "--root", str(ROOT)]) == 0, "run: python -m wdimage.docs --write"


def test_a_table_that_drifts_is_rewritten():
    committed = (ROOT / "README.md").read_text()
    first = next(iter(MODELS.values()))
    drifted = committed.replace(f"| {first.timeout_range[0]}-{first.timeout_range[1]} |", "| 1-9999 |", 1)
    assert drifted != committed
    assert docs.render(drifted) == committed


def test_a_new_column_is_one_entry(monkeypatch):
    monkeypatch.setattr(docs, "MODEL_COLUMNS", [*docs.MODEL_COLUMNS, ("identity", lambda m: m.identity)])
    table = docs.BLOCKS["models"]()
    assert table.splitlines()[0].endswith("| identity |")
    assert all(m.identity in table for m in MODELS.values())
    assert docs.render((ROOT / "README.md").read_text()) != (ROOT / "README.md").read_text()


# Pages other issues' branches write (the README links them already); the integrator empties this set on merge.
PENDING: set[str] = set()


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_anchor_resolves():
    broken = []
    for path in [*DOCUMENTS, ROOT / "kconfig-fragments" / "README.md"]:
        text = path.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            name = str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)
            if name in PENDING:
                continue
            if not resolved.exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
            elif anchor and resolved.suffix == ".md":
                headings = [_anchor(h) for h in re.findall(r"^#+ (.+)$", resolved.read_text(), re.M)]
                if anchor not in headings:
                    broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
