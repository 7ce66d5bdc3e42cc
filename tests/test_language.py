"""The course's language setting: NPGPT_LANG first, then the notebook's folder."""
from pathlib import Path

import pytest

from npgpt.runtime.language import LanguageError, language


def test_the_chinese_notebooks_folder_speaks_chinese(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NPGPT_LANG", raising=False)
    assert language(Path("/x/notebooks/zh")) == "zh"
    assert language(Path("/x/notebooks")) == "en"
    assert language(Path("/x/other/zh")) == "en"


def test_the_environment_wins_over_the_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPGPT_LANG", "en")
    assert language(Path("/x/notebooks/zh")) == "en"
    monkeypatch.setenv("NPGPT_LANG", " ZH ")
    assert language(Path("/x/notebooks")) == "zh"


def test_an_unknown_language_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NPGPT_LANG", "fr")
    with pytest.raises(LanguageError, match=r"^language 'fr' is not one npgpt speaks: expected one of en, zh$"):
        language()
