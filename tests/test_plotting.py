"""The plotting helpers return Figures, save atomically, and reject shapes they cannot draw."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from npgpt.ops import causal_mask, sinusoidal_table, softmax_forward
from npgpt.plots import figures as plotting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _causal_weights(rng, n_head=2, T=5):
    return softmax_forward(rng.standard_normal((n_head, T, T)) + causal_mask(T, T))[0]


@pytest.mark.slow
def test_sinusoidal_figure_is_saved_as_png(tmp_path):
    path = tmp_path / "sub" / "pe.png"
    fig = plotting.plot_sinusoidal_encoding(sinusoidal_table(32, 16), path=path)
    assert isinstance(fig, Figure)
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in path.parent.iterdir()] == ["pe.png"]   # no temporary file left over


def test_attention_figure_one_panel_per_head(rng, tmp_path):
    fig = plotting.plot_attention_pattern(_causal_weights(rng), tokens=list("abcde"),
                                          path=tmp_path / "att.png")
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["head 0", "head 1"]
    assert fig.axes[0].get_yticklabels()[2].get_text() == "2:c"   # position:token
    assert (tmp_path / "att.png").read_bytes().startswith(PNG_MAGIC)


def test_attention_panels_can_be_named_and_long_sequences_thin_their_labels(rng):
    att = _causal_weights(rng, n_head=2, T=50)
    fig = plotting.plot_attention_pattern(att, tokens=[f"t{i}" for i in range(50)], panel_titles=["a", "b"])
    assert [ax.get_title() for ax in fig.axes if ax.images] == ["a", "b"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][:3] == ["0:t0", "3:t3", "6:t6"]   # every 3rd of 50
    with pytest.raises(ValueError, match="got 1 panel titles for 2 panels"):
        plotting.plot_attention_pattern(att, panel_titles=["a"])


def test_attention_figure_single_matrix(rng):
    fig = plotting.plot_attention_pattern(_causal_weights(rng)[0])
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == []   # one unnamed panel
    assert fig.axes[0].get_ylabel() == "query $i$"


def test_no_file_without_a_path(rng, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plotting.plot_attention_pattern(_causal_weights(rng))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("att", [np.zeros((3, 4)), np.zeros(5), np.zeros((1, 2, 3, 3))])
def test_attention_rejects_non_square(att):
    with pytest.raises(ValueError, match="must be"):
        plotting.plot_attention_pattern(att)


def test_attention_rejects_wrong_token_count(rng):
    with pytest.raises(ValueError, match="3 tokens for a 5 x 5"):
        plotting.plot_attention_pattern(_causal_weights(rng), tokens=[1, 2, 3])


def test_sinusoidal_rejects_1d():
    with pytest.raises(ValueError, match="2-D"):
        plotting.plot_sinusoidal_encoding(np.zeros(8))


def test_failed_save_leaves_no_file(tmp_path):
    fig = plotting.plot_sinusoidal_encoding(sinusoidal_table(8, 4))
    with pytest.raises(ValueError):
        plotting.save_figure(fig, tmp_path / "pe.notaformat")
    assert list(tmp_path.iterdir()) == []


def test_the_loss_curve_mean_is_centred_and_starts_on_the_curve():
    falling = np.exp(-np.arange(40) / 5.0) + 1.0          # a loss that drops fast, then flattens
    smooth = plotting.centred_mean(falling, 11)
    assert smooth.shape == falling.shape
    assert smooth[0] == falling[0] and smooth[-1] == pytest.approx(falling[-1])   # the ends are their own mean
    assert smooth[5] == pytest.approx(falling[:11].mean())          # full window, centred on step 5
    assert smooth[2] == pytest.approx(falling[:5].mean())           # shrunk to stay centred
    line = 3.0 * np.arange(30) - 7.0
    np.testing.assert_allclose(plotting.centred_mean(line, 9), line)    # a straight line is unchanged
    trailing = np.convolve(falling, np.ones(11) / 11, mode="valid")
    assert trailing[0] - falling[10] > 10 * abs(smooth[10] - falling[10])   # a trailing mean lags far above


def test_the_loss_curve_figure(tmp_path):
    history = {"step": list(range(1, 101)), "train_loss": list(4.0 - np.log1p(np.arange(100)) / 3),
               "eval_step": [50, 100], "eval_train": [2.9, 2.6], "eval_val": [3.0, 2.7]}
    fig = plotting.plot_loss_curve(history, path=tmp_path / "loss.png")
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels[1] == "batch loss, centred mean of up to 11 steps"
    assert (tmp_path / "loss.png").read_bytes().startswith(PNG_MAGIC)


def _anatomy(parts: list[float], step: float) -> dict:
    names = ("attention", "MLP matmuls", "GELU", "LayerNorm", "head + loss", "embedding", "AdamW", "other")
    return {"parts_ms": dict(zip(names, parts)), "step_ms": step}


def _figure_texts(fig) -> str:
    return " ".join([fig.get_supxlabel(), *(t.get_text() for t in [*fig.texts, *fig.axes[0].texts])])


def test_step_anatomy_says_why_parts_timed_alone_overrun_the_whole_step(tmp_path):
    # the PyTorch row of benchmarks/anatomy.py's figure: its parts, timed alone, sum past its step
    result = {"npgpt-numba": _anatomy([13.8, 14.0, 1.8, 1.3, 0.5, 0.2, 0.9, 7.0], 39.5),
              "torch-eager": _anatomy([17.5, 16.1, 4.6, 1.0, 0.3, 0.1, 2.9, 0.0], 39.8)}
    fig = plotting.plot_step_anatomy(result, path=tmp_path / "anatomy.png")
    words = _figure_texts(fig)
    assert "parts alone 42 ms" in words and "add up to more than the whole step" in words
    assert words.count("parts alone") == 1              # numba's parts fit under its step: no mark
    assert (tmp_path / "anatomy.png").read_bytes().startswith(PNG_MAGIC)


def test_step_anatomy_without_an_overrun_has_no_note():
    fig = plotting.plot_step_anatomy({"npgpt-numba": _anatomy([13.8, 14.0, 1.8, 1.3, 0.5, 0.2, 0.9, 7.0], 39.5)})
    assert "parts alone" not in _figure_texts(fig) and "add up to more" not in _figure_texts(fig)


# ----------------------------------------------------------------- where the notebooks' figures go
def test_a_figure_path_only_when_the_figures_folder_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("NPGPT_FIGURES_DIR", raising=False)
    assert plotting.figure_path("pe.png") is None          # Jupyter, as a user runs it: save nothing
    monkeypatch.setenv("NPGPT_FIGURES_DIR", "")
    assert plotting.figure_path("pe.png") is None          # set but empty counts as unset
    monkeypatch.setenv("NPGPT_FIGURES_DIR", str(tmp_path))
    assert plotting.figure_path("pe.png") == str(tmp_path / "pe.png")


def test_the_fast_mode_does_not_change_where_figures_go(tmp_path, monkeypatch):
    monkeypatch.setenv("NPGPT_FIGURES_DIR", str(tmp_path))
    for fast in ("1", "0"):
        monkeypatch.setenv("NPGPT_FAST", fast)
        assert plotting.figure_path("pe.png") == str(tmp_path / "pe.png")
    monkeypatch.delenv("NPGPT_FIGURES_DIR")
    for fast in ("1", "0"):
        monkeypatch.setenv("NPGPT_FAST", fast)
        assert plotting.figure_path("pe.png") is None


@pytest.mark.parametrize("name", ["", "sub/pe.png", "../pe.png", "..", "/tmp/pe.png"])
def test_a_figure_name_is_a_plain_file_name(name, tmp_path, monkeypatch):
    monkeypatch.setenv("NPGPT_FIGURES_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="figure name must be a plain file name"):
        plotting.figure_path(name)


def test_the_figures_destination_is_said(tmp_path, monkeypatch):
    monkeypatch.delenv("NPGPT_FIGURES_DIR", raising=False)
    assert plotting.figures_destination() == "figures shown here, not saved (NPGPT_FIGURES_DIR is not set)"
    (tmp_path / "figures").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    monkeypatch.setenv("NPGPT_FIGURES_DIR", str(tmp_path / "figures"))   # what notebooks/build.py sets
    assert plotting.figures_destination() == "figures saved to ../figures"


def test_save_figure_without_a_path_saves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fig = plotting.plot_sinusoidal_encoding(sinusoidal_table(8, 4))
    assert plotting.save_figure(fig, None) is None
    assert list(tmp_path.iterdir()) == []
