"""Every notebook follows the course's house format (issue 25, item 3; notes: course2.md).

- Each numbered part, a markdown heading ``## N · Title`` with N >= 1, ends with one markdown cell
  that starts with ``### Questions`` and holds 2-4 numbered questions, each followed by its answer
  folded in a closed ``<details><summary>Answer</summary> ... </details>`` block that is not empty.
- The first markdown cell has a ``**Learning objectives**`` list of 3-6 items.
- The last cell is a markdown cell starting with ``## 要点 · Key points`` with exactly one top-level
  bullet per learning objective, each naming the part that showed it when the notebook has parts.

The notebooks are found by glob, so a new notebook is held to the format too. The checker returns
every problem it finds (not only the first), so one failing run says all that is missing.

The Chinese edition (notebooks/zh/, issue 26; checked by tests/test_zh_edition.py with
``format_problems(nb, "zh")``) writes its fixed lines bilingually: ``### 问题 · Questions``,
``<details><summary>答案</summary>``, ``**学习目标 · Learning objectives**``, the same
``## 要点 · Key points``, and its key points name parts as ``（第 3 部分）`` (or "(part 3)").
"""
import re
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# "## 3 · Title"; "## 3. Title" is caught too, so a part numbered another way is still a part.
PART = re.compile(r"^## +(\d+) *[·.] *\S")
LEVEL2 = re.compile(r"^## +\S")
QUESTION = re.compile(r"^(\d+)\. +\S")
DETAILS_CLOSE = re.compile(r"^\s*</details>\s*$")
LIST_ITEM = re.compile(r"^(?:[-*]|\d+\.) +\S")
BULLET = re.compile(r"^[-*] +\S")
KEY_POINTS = "## 要点 · Key points"
OBJECTIVES = "**Learning objectives**"
MIN_QUESTIONS, MAX_QUESTIONS = 2, 4
MIN_OBJECTIVES, MAX_OBJECTIVES = 3, 6


@dataclass(frozen=True)
class Forms:
    """The fixed lines of one edition of the course."""
    questions: str           # the first line of a questions cell
    answer: str              # the <summary> of a folded answer
    objectives: str          # what starts the learning objectives' line
    names_part: re.Pattern   # a key point naming the part that showed it

    @property
    def details_open(self) -> re.Pattern:
        return re.compile(rf"^\s*<details>\s*<summary>\s*{re.escape(self.answer)}\s*</summary>\s*$")


FORMS = {
    "en": Forms("### Questions", "Answer", OBJECTIVES, re.compile(r"\bparts? +\d")),
    "zh": Forms("### 问题 · Questions", "答案", "**学习目标 · Learning objectives**",
                re.compile(r"\bparts? +\d|第 *\d+(?:[ 、，,和与及至到–-]*\d+)* *部分")),
}


def _lines(cell) -> list[str]:
    return cell.source.splitlines() if cell.cell_type == "markdown" else []


def parts(nb) -> list[tuple[int, int, int]]:
    """(number, index of the heading's cell, index of the part's last cell) for each part N >= 1.

    A part ends before the next markdown cell holding any level-2 heading (another part, "Where each
    piece lives", the key points); a part whose next heading sits in its own cell has no cell of its
    own, so it cannot end with questions."""
    found = []   # (number, cell, line)
    for i, cell in enumerate(nb.cells):
        for k, line in enumerate(_lines(cell)):
            m = PART.match(line)
            if m and int(m.group(1)) >= 1:
                found.append((int(m.group(1)), i, k))
    result = []
    for number, start, k in found:
        if any(LEVEL2.match(line) for line in _lines(nb.cells[start])[k + 1:]):
            result.append((number, start, start - 1))   # the next heading shares this cell
            continue
        end = next((j - 1 for j in range(start + 1, len(nb.cells))
                    if any(LEVEL2.match(line) for line in _lines(nb.cells[j]))), len(nb.cells) - 1)
        result.append((number, start, end))
    return result


def question_problems(source: str, lang: str = "en") -> list[str]:
    """What is wrong with one ``### Questions`` cell (empty when nothing is)."""
    forms = FORMS[lang]
    lines = source.splitlines()
    if not lines or lines[0].strip() != forms.questions:
        return [f"does not start with the line '{forms.questions}'"]
    problems: list[str] = []
    questions: list[dict] = []   # number, answers seen, answer text, open block
    inside = False
    for line in lines[1:]:
        if inside:
            if DETAILS_CLOSE.match(line):
                inside = False
                q = questions[-1]
                q["answers"] += 1
                if not q["text"].strip():
                    problems.append(f"question {q['number']}'s answer is empty")
            else:
                questions[-1]["text"] += line + "\n"
            continue
        m = QUESTION.match(line)
        if m:
            questions.append({"number": int(m.group(1)), "answers": 0, "text": ""})
        elif forms.details_open.match(line):
            if not questions:
                problems.append("an answer comes before any numbered question")
                continue
            inside = True
            questions[-1]["text"] = ""
        elif "<details" in line or "</details" in line:
            problems.append(f"a folded block not written '<details><summary>{forms.answer}</summary>' "
                            f"... '</details>' on lines of their own: {line.strip()!r}")
    if inside:
        problems.append(f"question {questions[-1]['number']}'s answer is never closed with </details>")
    numbers = [q["number"] for q in questions]
    if not MIN_QUESTIONS <= len(questions) <= MAX_QUESTIONS:
        problems.append(f"has {len(questions)} numbered questions, expected "
                        f"{MIN_QUESTIONS}-{MAX_QUESTIONS}")
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"questions are numbered {numbers}, expected 1, 2, ...")
    for q in questions:
        if q["answers"] == 0 and not (inside and q is questions[-1]):
            problems.append(f"question {q['number']} has no folded answer "
                            f"(<details><summary>{forms.answer}</summary> ... </details>)")
        elif q["answers"] > 1:
            problems.append(f"question {q['number']} has {q['answers']} folded answers, expected one")
    return problems


def list_items(lines: list[str]) -> list[str]:
    """The top-level items of the first list in ``lines`` (continuation lines joined to their item)."""
    items: list[str] = []
    started = False
    for k, line in enumerate(lines):
        if LIST_ITEM.match(line):
            items.append(line)
            started = True
        elif not started:
            continue
        elif line.strip() and line[0] in " \t":
            items[-1] += " " + line.strip()
        elif not line.strip():
            following = next((x for x in lines[k + 1:] if x.strip()), "")
            if not LIST_ITEM.match(following):
                break
        else:
            break
    return items


def count_questions(source: str) -> int:
    """The numbered questions of a questions cell (lines ``N. ...`` outside the folded answers)."""
    count, inside = 0, False
    for line in source.splitlines():
        if re.match(r"^\s*<details>", line):
            inside = True
        elif DETAILS_CLOSE.match(line):
            inside = False
        elif not inside and QUESTION.match(line):
            count += 1
    return count


def objectives(nb, lang: str = "en") -> list[str] | None:
    """The learning objectives of the first markdown cell, or None when it has no such list."""
    first = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first is None:
        return None
    lines = first.source.splitlines()
    for k, line in enumerate(lines):
        if line.strip().startswith(FORMS[lang].objectives):
            return list_items(lines[k + 1:])
    return None


def questions_cells(nb, lang: str = "en") -> list[tuple[int, int | None]]:
    """(part number, index of its questions cell or None) for each part N >= 1."""
    found = []
    for number, start, end in parts(nb):
        last = nb.cells[end] if end > start else None
        ok = last is not None and last.cell_type == "markdown" and \
            last.source.lstrip().startswith(FORMS[lang].questions)
        found.append((number, end if ok else None))
    return found


def format_problems(nb, lang: str = "en") -> list[str]:
    """Every way ``nb`` departs from the house format, one line each (``lang``: which edition's
    fixed lines, :data:`FORMS`)."""
    forms = FORMS[lang]
    problems: list[str] = []
    for (number, start, _), (_, end) in zip(parts(nb), questions_cells(nb, lang)):
        if end is None:
            problems.append(f"part {number} (cell {start}) does not end with a '{forms.questions}' cell")
            continue
        problems += [f"part {number}'s questions (cell {end}): {p}"
                     for p in question_problems(nb.cells[end].source, lang)]
    goals = objectives(nb, lang)
    if goals is None:
        problems.append(f"the first markdown cell has no {forms.objectives} list")
    elif not MIN_OBJECTIVES <= len(goals) <= MAX_OBJECTIVES:
        problems.append(f"{len(goals)} learning objectives, expected {MIN_OBJECTIVES}-{MAX_OBJECTIVES}")
    last = nb.cells[-1] if nb.cells else None
    if last is None or last.cell_type != "markdown" or not last.source.startswith(KEY_POINTS):
        problems.append(f"the last cell is not a markdown cell starting with '{KEY_POINTS}'")
        return problems
    bullets = [line for line in last.source.splitlines() if BULLET.match(line)]
    if goals is not None and len(bullets) != len(goals):
        problems.append(f"{KEY_POINTS} has {len(bullets)} bullets for {len(goals)} learning "
                        f"objectives, expected one each")
    if parts(nb):
        unnamed = [k + 1 for k, b in enumerate(list_items(last.source.splitlines()[1:]))
                   if not forms.names_part.search(b)]
        if unnamed:
            problems.append(f"{KEY_POINTS} bullets {unnamed} name no part ('(part 3)')")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_course_format(path: Path) -> None:
    problems = format_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


# --- the checker itself, on planted notebooks ------------------------------------------------------

GOOD_QUESTIONS = """### Questions

1. Why is the loss at initialisation about ln V?

<details><summary>Answer</summary>

Uniform predictions give probability 1/V to every token.

</details>

2. What breaks without the mask?

<details><summary>Answer</summary>

Each position sees its own target.

</details>"""


def _good_notebook():
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    return nbformat.v4.new_notebook(cells=[
        md("# Title\n\n**Learning objectives**: after this notebook you can\n\n"
           "- count pairs;\n- train a model;\n  over two lines;\n- read a loss.\n\nMore prose."),
        code("x = 1"),
        md("## 0 · Set-up"),
        code("y = 2"),
        md("## 1 · Counting"),
        code("print(x)"),
        md(GOOD_QUESTIONS),
        md("## 2 · Training\n\nSome text."),
        md(GOOD_QUESTIONS),
        md("## Where each piece lives\n\n| a | b |"),
        md(f"{KEY_POINTS}\n\n- Pairs were counted (part 1).\n- A model was trained (part 2).\n"
           "- The loss was read (parts 1 and 2)."),
    ])


def _reread(nb, tmp_path: Path):
    path = tmp_path / "planted.ipynb"
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)


def test_a_notebook_in_the_format_passes(tmp_path: Path) -> None:
    assert format_problems(_reread(_good_notebook(), tmp_path)) == []


def test_each_planted_fault_is_reported(tmp_path: Path) -> None:
    nb = _good_notebook()
    del nb.cells[6]                                     # part 1 loses its questions
    nb.cells[7].source = (GOOD_QUESTIONS.split("2. What")[0]           # part 2: an answer in
                          + "2. What breaks without the mask?\n\n"          # plain sight
                          + "Each position sees its own target.\n")
    nb.cells[-1].source = nb.cells[-1].source.rsplit("\n- ", 1)[0]   # 要点 loses a bullet
    problems = format_problems(_reread(nb, tmp_path))
    text = "\n".join(problems)
    assert "part 1 (cell 4) does not end with a '### Questions' cell" in text, text
    assert "question 2 has no folded answer" in text, text
    assert "has 2 bullets for 3 learning objectives" in text, text


def test_other_faults_are_reported(tmp_path: Path) -> None:
    nb = _good_notebook()
    nb.cells[0].source = nb.cells[0].source.replace("- read a loss.\n", "")   # 2 objectives
    nb.cells[6].source = GOOD_QUESTIONS.replace(                         # an empty answer
        "Uniform predictions give probability 1/V to every token.", "")
    nb.cells[8].source = GOOD_QUESTIONS.rsplit("</details>", 1)[0]      # never closed
    nb.cells.append(nbformat.v4.new_code_cell("z = 3"))                 # 要点 not last
    text = "\n".join(format_problems(_reread(nb, tmp_path)))
    assert "2 learning objectives, expected 3-6" in text, text
    assert "question 1's answer is empty" in text, text
    assert "question 2's answer is never closed" in text, text
    assert "the last cell is not a markdown cell starting with" in text, text


def test_a_part_sharing_its_cell_with_the_next_heading_has_no_questions(tmp_path: Path) -> None:
    nb = _good_notebook()
    nb.cells[4].source = "## 1 · Counting\n\nText.\n\n## 2 · Training"
    text = "\n".join(format_problems(_reread(nb, tmp_path)))
    assert "part 1 (cell 4) does not end with a '### Questions' cell" in text, text
