"""The Chinese edition (notebooks/zh/, issue 26) holds the same facts as the English one.

For every notebooks/zh/NAME.ipynb:
- notebooks/NAME.ipynb exists;
- the code cells are the English ones, identical and in the same order (the outputs come from
  running them: notebooks/build.py zh/NAME; notebooks/sync_zh.py NAME copies the code over);
- the same parts (``## N ·``), a questions cell ending each, with as many questions in each;
- the course format of tests/test_course_structure.py in its Chinese form (``### 问题 · Questions``,
  ``<summary>答案</summary>``, ``**学习目标 · Learning objectives**``, ``（第 3 部分）``);
- the prose is Chinese: see :func:`prose_problems`.
When an English notebook changes its code or its parts, these tests fail until the Chinese one follows.
The last tests plant each fault in a small pair of notebooks and check that it is reported.
"""
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from matplotlib.figure import Figure
from test_course_structure import GOOD_QUESTIONS as QUESTIONS_EN
from test_course_structure import count_questions, format_problems, parts, questions_cells

from npgpt.plots import labels

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
ZH_DIR = NOTEBOOK_DIR / "zh"
ZH_NOTEBOOKS = sorted(ZH_DIR.glob("*.ipynb"))


def _load(name: str):
    """A script of notebooks/, imported by path (it is no package)."""
    spec = importlib.util.spec_from_file_location(f"npgpt_notebooks_{name}", NOTEBOOK_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync_zh = _load("sync_zh")
build = _load("build")

# ------------------------------------------------------------------------------ the checks

def edition_problems(en, zh) -> list[str]:
    """Where the Chinese notebook ``zh`` departs from the English ``en``: code, parts, questions."""
    problems = []
    where = sync_zh.first_difference(en, zh)
    if where is not None:
        problems.append(f"code differs from the English notebook's at {where} "
                        f"(python notebooks/sync_zh.py NAME copies it over)")
    en_parts, zh_parts = [p[0] for p in parts(en)], [p[0] for p in parts(zh)]
    if en_parts != zh_parts:
        problems.append(f"parts {zh_parts}, the English notebook has parts {en_parts}")
    en_q = [(n, None if i is None else count_questions(en.cells[i].source)) for n, i in questions_cells(en, "en")]
    zh_q = [(n, None if i is None else count_questions(zh.cells[i].source)) for n, i in questions_cells(zh, "zh")]
    if en_q != zh_q:
        problems.append(f"(part, questions) {zh_q}, the English notebook has {en_q} (None: no questions cell)")
    return problems


# What is not prose, so not counted: fenced code, formulas, inline code, link targets, URLs, HTML tags.
NOT_PROSE = [re.compile(p, re.S | re.M) for p in (
    r"^(```|~~~).*?^\1[^\n]*$",          # fenced code
    r"\$\$.+?\$\$",                      # display formulas
    r"(`+)(?:(?!\1).)+?\1",              # inline code (`x`, ``x``)
    r"(?<!\\)\$[^$\n]+?(?<!\\)\$",       # inline formulas
    r"\]\([^)]*\)",                      # link targets
    r"<https?://[^>]*>|https?://\S+",    # URLs
    r"</?[A-Za-z][^>\n]*>",              # HTML tags (<details>, <summary>, <br>)
    r"&[A-Za-z]+;",                      # HTML entities
)]
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")   # Han characters (not punctuation)
LATIN = re.compile(r"[A-Za-z]")

# Thresholds, from what a translated cell looks like: a Chinese sentence carries the meaning of an
# English one in about a third of the characters an English sentence has letters, and keeps in Latin
# only names (GPT, LSTM, PyTorch), units and glosses such as "困惑度（perplexity）". A fluent Chinese
# cell has several times more Han characters than Latin letters, so 2x over a whole notebook leaves
# room for terms-heavy cells while one English paragraph left in (300-600 letters) fails it, unless
# the notebook is long; that one is caught per cell: 40 Latin letters is about seven English words,
# more than any heading, name or formula label outside backticks, and a cell that long with no Han
# character at all is an untranslated sentence.
MIN_CJK_PER_LATIN = 2.0
MAX_LATIN_WITHOUT_CJK = 40


def prose(source: str) -> str:
    """The text of a markdown cell a reader reads as prose (see :data:`NOT_PROSE`)."""
    for pattern in NOT_PROSE:
        source = pattern.sub(" ", source)
    return source


def prose_problems(nb) -> list[str]:
    """Where the markdown of ``nb`` is not Chinese prose (empty when it is)."""
    problems, cjk, latin = [], 0, 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        text = prose(cell.source)
        han, letters = len(CJK.findall(text)), len(LATIN.findall(text))
        cjk, latin = cjk + han, latin + letters
        if han == 0 and letters >= MAX_LATIN_WITHOUT_CJK:
            problems.append(f"markdown cell {i} has {letters} Latin letters and no Chinese: "
                            f"{' '.join(text.split())[:70]!r}")
    if cjk < MIN_CJK_PER_LATIN * latin:
        problems.append(f"{cjk} Chinese characters for {latin} Latin letters in the markdown, expected "
                        f"at least {MIN_CJK_PER_LATIN:g}x as many (English prose left untranslated?)")
    return problems


def all_problems(en, zh) -> list[str]:
    return edition_problems(en, zh) + format_problems(zh, "zh") + prose_problems(zh)


# ------------------------------------------------------------------------------ the notebooks

def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _twin(path: Path) -> Path:
    return NOTEBOOK_DIR / path.name


@pytest.mark.parametrize("path", ZH_NOTEBOOKS, ids=lambda p: f"zh/{p.stem}")
def test_the_english_twin_exists(path: Path) -> None:
    assert _twin(path).exists(), f"zh/{path.name} has no English notebook notebooks/{path.name}"


@pytest.mark.parametrize("path", ZH_NOTEBOOKS, ids=lambda p: f"zh/{p.stem}")
def test_same_code_parts_and_questions_as_the_english_notebook(path: Path) -> None:
    if not _twin(path).exists():
        pytest.skip("no English twin (test_the_english_twin_exists fails)")
    problems = edition_problems(_read(_twin(path)), _read(path))
    assert not problems, f"zh/{path.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", ZH_NOTEBOOKS, ids=lambda p: f"zh/{p.stem}")
def test_chinese_notebook_follows_the_course_format(path: Path) -> None:
    problems = format_problems(_read(path), "zh")
    assert not problems, f"zh/{path.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", ZH_NOTEBOOKS, ids=lambda p: f"zh/{p.stem}")
def test_chinese_notebook_prose_is_chinese(path: Path) -> None:
    problems = prose_problems(_read(path))
    assert not problems, f"zh/{path.name}:\n  " + "\n  ".join(problems)


def test_english_notebooks_fail_the_prose_check() -> None:
    """The thresholds separate the editions: every English notebook, left untranslated, fails."""
    passing = [p.name for p in sorted(NOTEBOOK_DIR.glob("*.ipynb")) if not prose_problems(_read(p))]
    assert not passing, f"English notebooks that would pass as Chinese prose: {passing}"


def test_every_english_notebook_has_its_chinese_edition() -> None:
    """The README says every notebook exists in Chinese (issue 26)."""
    english = {p.name for p in NOTEBOOK_DIR.glob("*.ipynb")}
    chinese = {p.name for p in ZH_NOTEBOOKS}
    assert english == chinese, f"without a Chinese edition: {sorted(english - chinese)}; " \
                               f"without an English one: {sorted(chinese - english)}"


# ------------------------------------------------------------------------------ README.zh-CN.md

def _commands(path: Path) -> list[str]:
    """The set-up lines of a README (the two commands start with ``python3 -m venv``)."""
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("python3 -m venv")]


def test_the_chinese_readme_has_the_readmes_two_commands() -> None:
    en, zh = _commands(ROOT / "README.md"), _commands(ROOT / "README.zh-CN.md")
    assert len(en) == 2 and zh == en, f"README.zh-CN.md's commands {zh} are not README.md's {en}"


def test_the_chinese_readme_links_the_english_one_and_its_notebooks_exist() -> None:
    text = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert "](README.md)" in text.split("\n## ", 1)[0], "README.zh-CN.md must link README.md at its top"
    targets = re.findall(r"\]\(((?!https?:)[^)#\s]+)", text)
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, f"README.zh-CN.md links files that do not exist: {missing}"
    # each notebook of README.md's table, in either edition (the Chinese one where it exists)
    listed = re.findall(r"^\| `(\w+)` \|", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    linked = {Path(t).stem for t in targets if t.startswith("notebooks/")}
    assert listed and not set(listed) - linked, \
        f"README.zh-CN.md links no edition of {sorted(set(listed) - linked)}, which README.md lists"
    # ... and the Chinese one wherever it exists: a Chinese reader is not sent to English prose
    english_only = [t for t in targets if t.startswith("notebooks/") and t.count("/") == 1
                    and (ZH_DIR / Path(t).name).exists()]
    assert not english_only, f"README.zh-CN.md links the English {english_only}, which have a Chinese edition"


# ------------------------------------------------------------------------------ build and sync

def test_build_names_the_chinese_notebooks(tmp_path: Path) -> None:
    assert build.notebook_paths([]) == sorted(NOTEBOOK_DIR.glob("*.ipynb")) + ZH_NOTEBOOKS
    assert build.notebook_paths(["zh"]) == ZH_NOTEBOOKS
    assert build.notebook_paths(["03_sequence_models"]) == [NOTEBOOK_DIR / "03_sequence_models.ipynb"]
    with pytest.raises(build.NotebookError, match=r"no such notebook .*zh/99_none\.ipynb"):
        build.notebook_paths(["zh/99_none"])
    with pytest.raises(build.NotebookError, match=r"notebook name 'zh/a/b': expected NAME or zh/NAME"):
        build.notebook_paths(["zh/a/b"])
    assert build.is_chinese(ZH_DIR / "03_sequence_models.ipynb")
    assert not build.is_chinese(NOTEBOOK_DIR / "03_sequence_models.ipynb")


def test_a_chinese_build_speaks_chinese_and_saves_no_figure(monkeypatch) -> None:
    monkeypatch.setenv("NPGPT_FIGURES_DIR", "/somewhere")
    env = build.chinese_env()
    assert env["NPGPT_LANG"] == "zh" and "NPGPT_FIGURES_DIR" not in env and "NPGPT_FAST" not in env
    assert build.full_mode_env()["NPGPT_FIGURES_DIR"] == str(ROOT / "figures")


def test_sync_copies_the_code_and_keeps_the_prose() -> None:
    en, zh = _pair()
    en.cells[1].source = "x = 2   # changed in English"
    assert sync_zh.first_difference(en, zh).startswith("code cell 1: English cell 1 'x = 2")
    assert sync_zh.sync_cells(en, zh) == [1]
    assert sync_zh.first_difference(en, zh) is None and zh.cells[0].source.startswith("# 标题")


def test_sync_refuses_when_a_code_cell_was_added() -> None:
    en, zh = _pair()
    en.cells.insert(4, nbformat.v4.new_code_cell("extra = 1"))
    with pytest.raises(sync_zh.SyncError, match=r"^5 code cells in English, 4 in Chinese; they first "
                                                r"differ at code cell 3: English cell 4 'extra = 1'"):
        sync_zh.sync_cells(en, zh)


def test_sync_command_line_says_one_line_for_a_missing_notebook(capsys) -> None:
    assert sync_zh.main(["99_none"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no notebooks/99_none.ipynb" in err


# ------------------------------------------------------------------------------ figure labels

def test_label_speaks_english_by_default(monkeypatch) -> None:
    monkeypatch.setenv("NPGPT_LANG", "en")
    assert labels.label("loss", "损失") == "loss"


def test_without_a_cjk_font_labels_stay_english_and_say_so_once(monkeypatch, capsys) -> None:
    monkeypatch.setenv("NPGPT_LANG", "zh")
    monkeypatch.setattr(labels, "cjk_font", lambda: None)
    monkeypatch.setattr(labels, "_warned", False)
    assert [labels.label("loss", "损失") for _ in range(3)] == ["loss"] * 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"apt-get install -y {labels.CJK_FONT_PACKAGE}" in err, err


def test_a_chinese_label_is_drawn_with_cjk_glyphs(monkeypatch, recwarn) -> None:
    """No "Glyph ... missing from font(s)" warning (matplotlib's sign of a tofu box) when drawn."""
    if labels.cjk_font() is None:
        pytest.skip(f"no CJK font installed (apt-get install -y {labels.CJK_FONT_PACKAGE}; .ci/run does)")
    monkeypatch.setenv("NPGPT_LANG", "zh")
    fig = Figure()
    ax = fig.subplots()
    ax.set(title=labels.label("loss by step", "按步数的损失"), xlabel=labels.label("step", "步数"))
    fig.savefig(io.BytesIO(), format="png")      # renders the text (a bare Figure's canvas.draw() does not)
    missing = [str(w.message) for w in recwarn if "missing from" in str(w.message)]
    assert ax.get_title() == "按步数的损失" and not missing, missing


def test_symbols_a_cjk_font_lacks_come_from_the_latin_font(tmp_path) -> None:
    """WenQuanYi has no ␣, which notebook 01 draws for a space: in a Chinese kernel, once a cell has
    called ``label``, such a symbol is drawn from DejaVu Sans, not as a box."""
    if labels.cjk_font() is None:
        pytest.skip(f"no CJK font installed (apt-get install -y {labels.CJK_FONT_PACKAGE}; .ci/run does)")
    notebook_cell = "\n".join([
        "import io, warnings",
        "from matplotlib.figure import Figure",
        "from npgpt.plots.labels import label as tr",
        "tr('loss', '损失')",
        "fig = Figure()",
        "ax = fig.subplots()",
        "ax.set_title(tr('space ␣, τ ≈ 1 µs', '空格 ␣，τ ≈ 1 µs'))",
        "warnings.simplefilter('always')",
        "fig.savefig(io.BytesIO(), format='png')",
        "print(ax.get_title())"])
    run = subprocess.run([sys.executable, "-c", notebook_cell], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "NPGPT_LANG": "zh"}, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "空格 ␣，τ ≈ 1 µs", run.stderr
    assert "missing from" not in run.stderr, run.stderr


# ------------------------------------------------------------------------------ planted faults

QUESTIONS_ZH = """### 问题 · Questions

1. 为什么初始化时的损失约为 $\\ln V$？

<details><summary>答案</summary>

均匀的预测给每个词元的概率都是 $1/V$。

</details>

2. 去掉掩码会出什么问题？

<details><summary>答案</summary>

每个位置都能看到自己的目标，`loss` 因而失去意义。

</details>"""

ENGLISH_PARAGRAPH = ("The model reads the characters one at a time and predicts the next one; "
                     "its loss falls as it learns which letters follow which.")


def _pair():
    """A small English notebook and its Chinese translation, in the format."""
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    en = nbformat.v4.new_notebook(cells=[
        md("# Title\n\n**Learning objectives**: after this notebook you can\n\n- count pairs;\n"
           "- train a model;\n- read a loss."),
        code("x = 1"),
        md("## 1 · Counting\n\nWe count pairs of characters."),
        code("print(x)"),
        md(QUESTIONS_EN),
        md("## 2 · Training\n\nWe train the model."),
        code("y = x + 1"),
        code("print(y)"),
        md(QUESTIONS_EN),
        md("## 要点 · Key points\n\n- Pairs were counted (part 1).\n- A model was trained (part 2).\n"
           "- The loss was read (parts 1 and 2)."),
    ])
    zh = nbformat.v4.new_notebook(cells=[
        md("# 标题\n\n**学习目标 · Learning objectives**：学完本笔记本，你能够\n\n- 统计字符对；\n"
           "- 训练一个模型；\n- 读懂损失。"),
        code("x = 1"),
        md("## 1 · 计数\n\n我们统计相邻字符对出现的次数，得到一张二元语法（bigram）表。"),
        code("print(x)"),
        md(QUESTIONS_ZH),
        md("## 2 · 训练\n\n用交叉熵损失和 `AdamW` 训练模型，公式 $\\ell = -\\log p$ 不变。"),
        code("y = x + 1"),
        code("print(y)"),
        md(QUESTIONS_ZH),
        md("## 要点 · Key points\n\n- 统计了字符对（第 1 部分）。\n- 训练了一个模型（第 2 部分）。\n"
           "- 读懂了损失（第 1、2 部分）。"),
    ])
    return en, zh


def test_a_faithful_translation_passes() -> None:
    en, zh = _pair()
    assert format_problems(en) == [] and all_problems(en, zh) == []


def test_a_changed_code_cell_is_reported() -> None:
    en, zh = _pair()
    zh.cells[7].source = "print(y + 1)"
    text = "\n".join(all_problems(en, zh))
    assert "code differs from the English notebook's at code cell 4: English cell 7 'print(y)', " \
           "Chinese cell 7 'print(y + 1)', line 1: English 'print(y)', Chinese 'print(y + 1)'" in text, text


def test_code_cells_out_of_order_are_reported() -> None:
    en, zh = _pair()
    zh.cells[6], zh.cells[7] = zh.cells[7], zh.cells[6]
    assert "code differs from the English notebook's at code cell 3" in "\n".join(all_problems(en, zh))


def test_a_missing_questions_cell_is_reported() -> None:
    en, zh = _pair()
    del zh.cells[4]
    text = "\n".join(all_problems(en, zh))
    assert "part 1 (cell 2) does not end with a '### 问题 · Questions' cell" in text, text
    assert "(part, questions) [(1, None), (2, 2)], the English notebook has [(1, 2), (2, 2)]" in text, text


def test_a_missing_question_and_a_missing_part_are_reported() -> None:
    en, zh = _pair()
    zh.cells[8].source = QUESTIONS_ZH.split("\n2. ")[0]           # part 2 keeps one question
    text = "\n".join(all_problems(en, zh))
    assert "[(1, 2), (2, 1)], the English notebook has [(1, 2), (2, 2)]" in text, text
    en, zh = _pair()
    zh.cells[5].source = "## 训练\n\n用交叉熵损失训练模型。"          # the part lost its number
    assert "parts [1], the English notebook has parts [1, 2]" in "\n".join(all_problems(en, zh))


def test_english_forms_in_a_chinese_notebook_are_reported() -> None:
    en, zh = _pair()
    zh.cells[4].source = QUESTIONS_ZH.replace("### 问题 · Questions", "### Questions")
    zh.cells[0].source = zh.cells[0].source.replace("**学习目标 · Learning objectives**", "**Learning objectives**")
    text = "\n".join(format_problems(zh, "zh"))
    assert "part 1 (cell 2) does not end with a '### 问题 · Questions' cell" in text, text
    assert "the first markdown cell has no **学习目标 · Learning objectives** list" in text, text


def test_an_english_paragraph_left_is_reported() -> None:
    en, zh = _pair()
    zh.cells[5].source = f"## 2 · 训练\n\n{ENGLISH_PARAGRAPH}"
    text = "\n".join(all_problems(en, zh))
    assert "markdown cell 5 has 102 Latin letters and no Chinese" not in text   # the heading is Chinese
    assert "Chinese characters for" in text and "Latin letters in the markdown" in text, text
    zh.cells.insert(6, nbformat.v4.new_markdown_cell(ENGLISH_PARAGRAPH))
    text = "\n".join(all_problems(en, zh))
    assert "markdown cell 6 has 102 Latin letters and no Chinese: 'The model reads" in text, text


def test_code_formulas_links_and_tags_are_not_counted_as_prose() -> None:
    cell = ("见 [文档](https://example.org/a/very/long/english/path) 与 `np.einsum('bthd,bshd->bhts')`：\n\n"
            "$$\\mathrm{softmax}(QK^\\top/\\sqrt{d})V$$\n\n```python\nfor token in tokens:\n    pass\n```\n"
            "<details><summary>答案</summary>")
    assert LATIN.findall(prose(cell)) == [] and len(CJK.findall(prose(cell))) == 6
