"""The notebook standard (GUIDE section 5), checked on every numbered notebook.

Each rule is a function that returns the problems it finds in one notebook, as
sentences a notebook author can act on. The same rules run on small synthetic
notebooks that each break one rule, so a rule that stopped finding its problem
would fail here too.
"""

import pathlib
import re

import nbformat
import pytest
from nbval.plugin import comment_markers

from dlkit import exercises

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NUMBERED = sorted(NOTEBOOKS.glob("[0-9][0-9]*.ipynb"))

OVERVIEW = {
    "What you will learn": "the objectives",
    "Prerequisite": "the prerequisites",
    "Run time": "the run time",
    "quick": "the quick profile's run time",
    "full": "the full profile's run time",
    "Result": "the results",
}
CHECK_CALL = re.compile(r"\b(?:exercises|checks)\.(check_\w+)\(")
# Outputs that name what only the machine that wrote them has.
MACHINE_ONLY = {
    "an absolute path": re.compile(
        r"(?<![\w.~])/(?:tmp|home|root|Users|private|var/folders|mnt|work)/\S*"
        r"|\b[A-Z]:\\\S*"
    ),
    "a timestamped run or file": re.compile(r"\b20\d{6}[-_T]?\d{6}\b"),
    "a temporary folder": re.compile(r"\btmp[a-z0-9_]{8,}\b"),
}


def _source(cell):
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def _markdown(notebook):
    return [_source(c) for c in notebook.cells if c.cell_type == "markdown"]


def _code(notebook):
    return [(i, c) for i, c in enumerate(notebook.cells) if c.cell_type == "code"]


def _headings(notebook):
    return [
        line.lstrip("#").strip()
        for text in _markdown(notebook)
        for line in text.splitlines()
        if line.startswith("#")
    ]


def _output_text(output):
    text = output.get("text", "")
    data = output.get("data", {})
    parts = [text, data.get("text/plain", ""), data.get("text/html", "")]
    parts += output.get("traceback", [])
    return "".join("".join(p) if isinstance(p, list) else p for p in parts)


def title(notebook):
    cells = notebook.cells
    if not cells or cells[0].cell_type != "markdown":
        return ["The first cell should be a markdown cell with the title."]
    first_line = _source(cells[0]).lstrip().splitlines()[:1]
    if not first_line or not re.match(r"# \S", first_line[0]):
        return [f"The first line should be a `# ` title; found {first_line}."]
    return []


def overview(notebook):
    before_code = []
    for cell in notebook.cells:
        if cell.cell_type == "code":
            break
        before_code.append(_source(cell))
    text = "\n".join(before_code)
    return [
        f"The overview (markdown before the first code cell) does not state "
        f"{what}: expected the words {word!r}."
        for word, what in OVERVIEW.items()
        if word not in text
    ]


def one_setup_call(notebook):
    calls = [i for i, c in _code(notebook) if "dlkit.setup(" in _source(c)]
    if len(calls) != 1:
        return [
            f"Expected one `dlkit.setup(...)` call; found {len(calls)} (cells {calls})."
        ]
    return []


def a_figure(notebook):
    for _, cell in _code(notebook):
        if any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
            return []
    return ["No stored output holds a figure (image/png): add at least one plot."]


def what_you_learned(notebook):
    if any("What you learned" in h for h in _headings(notebook)):
        return []
    return ["No markdown heading 'What you learned'."]


def exercises_with_checks(notebook):
    headings = [i for i, c in enumerate(notebook.cells) if c.cell_type == "markdown"]
    start = next(
        (
            i
            for i in headings
            if re.search(r"^#+ .*Exercises", _source(notebook.cells[i]), re.M)
        ),
        None,
    )
    if start is None:
        return ["No markdown heading 'Exercises'."]
    problems, checks, solved = [], [], set()
    for i, cell in _code(notebook):
        if i < start:
            continue
        names = CHECK_CALL.findall(_source(cell))
        checks += [n for n in names if n not in checks]
        if "solution" in cell.metadata.get("tags", []):
            solved.update(names)
    if not 2 <= len(checks) <= 3:
        problems.append(
            f"Expected 2-3 exercises with a `dlkit.exercises` check; found "
            f"{len(checks)}: {checks}."
        )
    unknown = [n for n in checks if n not in exercises.__all__]
    if unknown:
        problems.append(f"Checks not in `dlkit.exercises`: {unknown}.")
    unsolved = [n for n in checks if n not in solved]
    if unsolved:
        problems.append(
            f"No cell tagged `solution` calls {unsolved}: put the worked solution "
            "and its check in a cell with the tag `solution`."
        )
    return problems


def nbval_markers(notebook):
    problems = []
    for i, cell in _code(notebook):
        for line in _source(cell).splitlines():
            marker = line.strip()
            if "NBVAL" in marker and marker.lstrip("#").strip() not in comment_markers:
                problems.append(
                    f"Cell {i}: {marker!r} is not a marker nbval reads; write it "
                    f"alone on its line, one of {sorted(comment_markers)}."
                )
    return problems


def no_machine_only_outputs(notebook):
    problems = []
    for i, cell in _code(notebook):
        text = "".join(_output_text(o) for o in cell.get("outputs", []))
        for what, pattern in MACHINE_ONLY.items():
            for found in sorted(set(pattern.findall(text)))[:3]:
                problems.append(
                    f"Cell {i}'s output names {what}, {found!r}, which exists only "
                    "on the machine that wrote it."
                )
    return problems


RULES = [
    title,
    overview,
    one_setup_call,
    a_figure,
    what_you_learned,
    exercises_with_checks,
    nbval_markers,
    no_machine_only_outputs,
]


def problems_of(notebook):
    return [problem for rule in RULES for problem in rule(notebook)]


@pytest.mark.parametrize("path", NUMBERED, ids=[p.name for p in NUMBERED])
def test_every_numbered_notebook_keeps_the_standard(path):
    problems = problems_of(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}:\n- " + "\n- ".join(problems)


# ------------------------------------------------------- synthetic notebooks
def _figure_output():
    return nbformat.v4.new_output(
        "display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}
    )


def _good_notebook():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    solution = {"tags": ["solution"]}
    cells = [
        md(
            "# 99 · A tiny lesson\n\n**What you will learn**\n- one thing\n\n"
            "**Prerequisites:** none. **Run time:** 5 s in the quick profile, "
            "a minute in the full one.\n\n**Results:** it works."
        ),
        code("import dlkit\n\ndlkit.setup(seed=42)"),
        code("# NBVAL_IGNORE_OUTPUT\nplot()", outputs=[_figure_output()]),
        md("## What you learned\n- one thing"),
        md("## Exercises\n\n**1.** Write a sigmoid."),
        code("dlkit.exercises.check_sigmoid(sigmoid)"),
        code("dlkit.exercises.check_sigmoid(right)", metadata=solution),
        md("**2.** Write a softmax."),
        code("dlkit.exercises.check_softmax(softmax)"),
        code("dlkit.exercises.check_softmax(right)", metadata=solution),
    ]
    return nbformat.v4.new_notebook(cells=cells)


def _edited(edit):
    notebook = _good_notebook()
    edit(notebook.cells)
    return notebook


def _output(text):
    return lambda cells: cells[2].outputs.append(
        nbformat.v4.new_output("stream", name="stdout", text=text)
    )


def _overview_without(text):
    return lambda cells: setattr(cells[0], "source", cells[0].source.replace(text, ""))


BROKEN = {
    "no title": (_overview_without("# 99 · "), "`# ` title"),
    "no objectives": (_overview_without("What you will"), "objectives"),
    "no full-profile time": (_overview_without("full"), "full profile"),
    "no results": (_overview_without("Results"), "the results"),
    "two setup calls": (
        lambda c: c.insert(2, nbformat.v4.new_code_cell("dlkit.setup(seed=1)")),
        "found 2",
    ),
    "no figure": (lambda c: c[2].outputs.clear(), "figure"),
    "no what you learned": (lambda c: c.pop(3), "What you learned"),
    "no exercises": (lambda c: c.__delitem__(slice(4, None)), "'Exercises'"),
    "one exercise": (lambda c: c.__delitem__(slice(7, None)), "found 1"),
    "unknown check": (
        lambda c: [
            setattr(c[i], "source", "exercises.check_nothing(f)") for i in (8, 9)
        ],
        "not in `dlkit.exercises`",
    ),
    "untagged solution": (lambda c: c[9].metadata.clear(), "tagged `solution`"),
    "marker with trailing text": (
        lambda c: setattr(c[2], "source", "# NBVAL_IGNORE_OUTPUT (timing)\nplot()"),
        "not a marker nbval reads",
    ),
    "an absolute path": (_output("saved to /tmp/abc/model.keras\n"), "absolute path"),
    "a timestamped run": (
        _output("logs in runs/03/adam/20261130-170054\n"),
        "timestamped",
    ),
    "a temporary folder": (_output("wrote tmpk3j2h1x9a/model\n"), "temporary folder"),
}


def test_a_notebook_that_keeps_the_standard_passes():
    assert problems_of(_good_notebook()) == []


@pytest.mark.parametrize("case", BROKEN)
def test_a_notebook_that_breaks_one_rule_is_told_which(case):
    edit, phrase = BROKEN[case]
    problems = problems_of(_edited(edit))
    assert len(problems) == 1 and phrase in problems[0], problems
