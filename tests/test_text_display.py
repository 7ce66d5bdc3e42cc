"""npgpt.text.display.pad: fixed-width columns that stay straight when the text is Chinese (issue 26:
the Chinese edition's tables were ragged, f"{title:<62}" padding by characters)."""
import pytest

from npgpt.checks import UsageError
from npgpt.text.display import display_width, pad

ASCII = ["", "a", "linear_backward", "after 600 training steps", "x" * 30]


@pytest.mark.parametrize("text", ASCII)
@pytest.mark.parametrize("width", [0, 5, 28, 62])
def test_ascii_pads_as_the_format_spec_does(text, width):
    # The English notebooks switch from f"{t:<w}" to pad(t, w): their outputs must not move.
    assert pad(text, width) == text.ljust(width) == f"{text:<{width}}"
    assert pad(text, width, ">") == text.rjust(width) == f"{text:>{width}}"
    assert pad(text, width, "^") == f"{text:^{width}}"


def test_han_characters_take_two_columns_so_get_half_the_padding():
    assert display_width("初始化时") == 8
    assert pad("初始化时", 28, ">") == " " * 20 + "初始化时"
    assert pad("幅值剪枝", 10) == "幅值剪枝  "
    assert pad("幅值剪枝", 10, "^") == " 幅值剪枝 "


def test_mixed_text_counts_each_character_by_its_width():
    # Han and fullwidth punctuation （ ： count 2; ASCII, and the Ambiguous ≈, count 1.
    text = "GELU（tanh 近似）"
    assert display_width(text) == len("GELU") + 2 + len("tanh ") + 4 + 2
    assert display_width(pad(text, 40)) == 40 and pad(text, 40).startswith(text)
    assert display_width("f ≈ 0.50") == 8
    assert display_width("训练 600 步之后") == 15


def test_a_column_of_mixed_titles_lines_up():
    titles = ["线性层 y = xW + b 的反向传播", "嵌入查表的反向传播：一次散射累加（scatter-add）", "幅值剪枝",
              "top_p filter"]
    rows = [pad(t, 50) + "|" for t in titles]
    assert {display_width(row) for row in rows} == {51}


def test_text_wider_than_the_column_comes_back_unchanged():
    assert pad("反向传播", 3) == "反向传播"
    assert pad("反向传播", 8, ">") == "反向传播"


@pytest.mark.parametrize("args, named", [(("a", -1), "width"), (("a", 2.5), "width"),
                                         (("a", 4, "left"), "align"), ((3, 4), "text")])
def test_bad_arguments_are_named_in_one_line(args, named):
    with pytest.raises(UsageError, match=named) as info:
        pad(*args)
    assert "\n" not in str(info.value)
