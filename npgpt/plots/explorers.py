"""Controls you can move: four explorers for the notebooks, built with ipywidgets.

| explorer | controls | what it computes |
|---|---|---|
| :class:`DecodingExplorer` | temperature, top-k, top-p, seed | a model's next-token distribution after each rule, and the token drawn |
| :class:`AttentionExplorer` | layer, head, prompt | the attention weights of one head for a prompt |
| :class:`QuantizationExplorer` | bits, group size | a weight matrix's reconstruction error and its size in bytes |
| :class:`PlannerExplorer` | FLOPs, memory, hours, ranks | the plan of :func:`npgpt.allocation.planner.plan` |

Each explorer keeps its numbers apart from its pictures: :meth:`Explorer.compute` takes the control
values and returns plain numbers (the tests call it directly), :meth:`Explorer.draw` turns them into
a matplotlib Figure, and :meth:`Explorer.widget` builds the controls, which call both on every
change. :meth:`Explorer.show` picks what a notebook cell returns: the controls when a person's front
end can show them (:func:`widgets_can_show`), otherwise the static figure of the default setting,
so a headless run (the tests, ``notebooks/build.py``) and a reader of the committed notebook see a
picture, not a dead widget.
"""
import html
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray

from ..allocation.planner import Plan, format_plan, measured_flop_rate, parse_bytes, parse_flops, plan
from ..allocation.quantize import dequantize_tensor, pack_int4, quantize_tensor
from ..allocation.scaling import Recipe, load_law, shape_for
from ..checks import UsageError, check_int
from ..decoding import next_token_distribution
from ..decoding.generate import next_token_logits
from ..models import GPT
from ..models.config import GPTConfig
from .labels import label
from .model import plot_attention_pattern

__all__ = ["AttentionExplorer", "AttentionView", "DecodingExplorer", "DecodingView", "Explorer",
           "PlannerExplorer", "PlannerView", "QuantizationExplorer", "QuantizationView", "widgets_can_show"]


class Tokenizer(Protocol):
    def encode(self, text: str) -> Sequence[int] | NDArray[np.integer]: ...
    def decode(self, ids: Sequence[int] | NDArray[np.integer]) -> str: ...


# ----------------------------------------------------------------------------- can widgets show?
def widgets_can_show() -> bool:
    """Whether a person's front end is running this code and can show widgets: ipywidgets imports,
    the code runs in an IPython kernel, and the request being executed allows stdin. Jupyter Lab,
    Notebook and VS Code send ``allow_stdin=True`` with each cell (they can answer ``input()``);
    nbclient, which executes notebooks headless (the tests, ``notebooks/build.py``, nbconvert),
    sends False, and there a widget would be stored as a dead, empty box."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    if kernel is None or not hasattr(kernel, "get_parent"):     # plain Python, terminal IPython
        return False
    return bool(kernel.get_parent().get("content", {}).get("allow_stdin", False))


def _ipywidgets() -> Any:
    """The ipywidgets module, or a one-line error saying how to get it."""
    try:
        import ipywidgets
    except ImportError:
        raise UsageError("interactive=True needs ipywidgets (pip install ipywidgets); "
                         "interactive=False draws the static figure") from None
    return ipywidgets


# ----------------------------------------------------------------------------- the common part
class Explorer(ABC):
    """Controls, a compute step and a figure. Subclasses set :attr:`defaults` (control name ->
    value) and write :meth:`compute`, :meth:`draw`, :meth:`describe` and :meth:`make_controls`."""

    defaults: dict[str, Any]

    def __init__(self) -> None:
        self.controls: dict[str, Any] = {}      # name -> widget, once widget() has built them
        self.result: Any = None                 # what the controls computed last
        self.message: Any = None                # the HTML line under the controls
        self.output: Any = None                 # the Output widget holding the figure

    @abstractmethod
    def compute(self, *args: Any, **values: Any) -> Any:
        """The numbers for one setting of the controls."""

    @abstractmethod
    def draw(self, result: Any) -> Figure:
        """A figure of what :meth:`compute` returned."""

    @abstractmethod
    def describe(self, result: Any) -> str:
        """A few lines of text about what :meth:`compute` returned."""

    @abstractmethod
    def make_controls(self, widgets: Any) -> dict[str, Any]:
        """name -> widget, each starting at :attr:`defaults`; ``widgets`` is the ipywidgets module."""

    def values(self) -> dict[str, Any]:
        """The controls' current values, as :meth:`compute` takes them."""
        return {name: control.value for name, control in self.controls.items()}

    def static_figure(self) -> Figure:
        """The figure of the default setting: what shows where widgets cannot."""
        return self.draw(self.compute(**self.defaults))

    def widget(self) -> Any:
        """The controls, a text line and the figure, in one box; every change recomputes both."""
        widgets = _ipywidgets()
        self.controls = self.make_controls(widgets)
        self.message, self.output = widgets.HTML(), widgets.Output()
        for control in self.controls.values():
            control.observe(self.update, names="value")
        self.update()
        return widgets.VBox([widgets.HBox(list(self.controls.values()),
                                          layout=widgets.Layout(flex_flow="row wrap")),
                             self.message, self.output])

    def update(self, change: object = None) -> None:
        """Recompute from the controls and redraw; a refused setting shows its one-line reason."""
        from IPython import get_ipython
        from IPython.display import display
        # Outside a kernel an Output widget captures nothing: display would print to the terminal.
        in_kernel = getattr(get_ipython(), "kernel", None) is not None
        try:
            self.result = self.compute(**self.values())
        except UsageError as err:
            self.result = None
            self.message.value = f"<b>{html.escape(str(err))}</b>"
            if in_kernel:
                self.output.clear_output()
            return
        self.message.value = f"<pre>{html.escape(self.describe(self.result))}</pre>"
        if in_kernel:                           # outside one nothing would show the figure: not drawn
            self.output.clear_output(wait=True)     # the old figure goes when the new one comes
            with self.output:
                display(self.draw(self.result))

    def show(self, interactive: bool | None = None) -> Any:
        """The controls (``interactive=True``) or the default setting's figure (False); None asks
        :func:`widgets_can_show`. Return it from a notebook cell to display it."""
        if interactive is None:
            interactive = widgets_can_show()
        return self.widget() if interactive else self.static_figure()


def _visible(text: str) -> str:
    """``text`` with a newline shown as ⏎ and a space as ␣, so every character can be seen."""
    return text.replace("\n", "⏎").replace(" ", "␣")


def _label(tokenizer: Tokenizer | None, token: int) -> str:
    return str(token) if tokenizer is None else _visible(tokenizer.decode([token]))


def _prompt_ids(prompt: str | ArrayLike, tokenizer: Tokenizer | None, block_size: int) -> NDArray[np.int64]:
    """A prompt's token ids, the last ``block_size`` of them: text through ``tokenizer``, or with no
    tokenizer whitespace-separated ids ("3 1 4"); an array of ids is taken as it is."""
    if isinstance(prompt, str):
        if tokenizer is not None:
            ids = np.asarray(tokenizer.encode(prompt), dtype=np.int64)
        else:
            try:
                ids = np.array([int(word) for word in prompt.split()], dtype=np.int64)
            except ValueError:
                raise UsageError(f"prompt must be token ids separated by spaces (no tokenizer was given), "
                                 f"got {prompt!r:.60}") from None
    else:
        ids = np.asarray(prompt, dtype=np.int64).ravel()
    if ids.size == 0:
        raise UsageError(f"prompt must hold at least one token, got {prompt!r:.60}")
    return ids[-block_size:]


# ----------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class DecodingView:
    """A next-token distribution after each rule, in the order a sampler applies them, and the
    token drawn from the last one with ``seed``."""
    model: NDArray[np.float64]              # softmax of the logits, tau = 1
    after_temperature: NDArray[np.float64]
    after_top_k: NDArray[np.float64]
    after_top_p: NDArray[np.float64]        # what the sampler draws from
    token: int
    text: str                               # the token drawn, as shown (⏎ newline, ␣ space)


class DecodingExplorer(Explorer):
    """Temperature, top-k and top-p over ``model``'s distribution of the token after ``context``
    (text through ``tokenizer``, or token ids), and the token a seeded sampler draws."""

    def __init__(self, model: GPT, context: str | ArrayLike, tokenizer: Tokenizer | None = None,
                 shown: int = 20, temperature: float = 1.0, top_k: int = 10, top_p: float = 0.9,
                 seed: int = 0) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.context = _prompt_ids(context, tokenizer, model.config.block_size)
        self.logits = next_token_logits(model, self.context[None])[0]
        self.vocab_size = self.logits.size
        self.shown = min(check_int("shown", shown), self.vocab_size)
        self.defaults = dict(temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)

    def compute(self, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                seed: int = 0) -> DecodingView:
        """Each rule's distribution (:func:`npgpt.next_token_distribution`: temperature, then
        top-k, then top-p; None skips a filter) and one draw from the last, as
        :func:`npgpt.decoding.strategies.select_next_token` draws it."""
        seed = check_int("seed", seed, low=0)
        last = next_token_distribution(self.logits, temperature, top_k, top_p)
        token = int(np.random.default_rng(seed).choice(last.size, p=last))
        return DecodingView(next_token_distribution(self.logits),
                            next_token_distribution(self.logits, temperature),
                            next_token_distribution(self.logits, temperature, top_k), last, token,
                            _label(self.tokenizer, token))

    def describe(self, result: DecodingView) -> str:
        kept = [int(np.count_nonzero(p)) for p in (result.after_top_k, result.after_top_p)]
        return (f"top-k keeps {kept[0]} of {self.vocab_size} tokens, top-p {kept[1]}; drew {result.text!r} "
                f"(p = {result.after_top_p[result.token]:.3f})")

    def draw(self, result: DecodingView) -> Figure:
        order = np.argsort(-result.model, kind="stable")[:self.shown]
        labels = [_label(self.tokenizer, int(i)) for i in order]
        fig = Figure(figsize=(13, 3.6), layout="constrained")
        axes = fig.subplots(1, 3, sharey=True)
        panels = [(label("after temperature", "温度之后"), result.after_temperature),
                  (label("then top-k", "再经 top-k"), result.after_top_k),
                  (label("then top-p: sampled from", "再经 top-p：从此采样"), result.after_top_p)]
        for ax, (title, p) in zip(axes, panels):
            colors = ["C3" if i == result.token and p is result.after_top_p else "C0" for i in order]
            ax.bar(range(order.size), p[order], color=colors, alpha=0.85)
            ax.bar(range(order.size), result.model[order], color="none", edgecolor="0.3", lw=0.8)
            ax.set_xticks(range(order.size), labels, fontsize=9)
            kept = np.count_nonzero(p)
            ax.set_title(label(f"{title}: {kept} of {self.vocab_size} possible",
                               f"{title}：{self.vocab_size} 个中可取 {kept} 个"), fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel(label("probability", "概率"))
        fig.supxlabel(label(f"the {order.size} likeliest next tokens under the model "
                            f"(grey outline: the model, \u03c4 = 1; red: the token drawn)",
                            f"模型认为最可能的 {order.size} 个下一词元（灰色轮廓：模型本身，\u03c4 = 1；红色：抽到的词元）"),
                      fontsize=10)
        context = _visible(self._context_text())
        fig.suptitle(label(f"context \u201c{context}\u201d \u2192 drew {result.text!r}",
                           f"上下文\u201c{context}\u201d \u2192 抽到 {result.text!r}"))
        return fig

    def _context_text(self) -> str:
        tail = self.context[-40:]
        return " ".join(map(str, tail)) if self.tokenizer is None else self.tokenizer.decode(tail)

    def make_controls(self, widgets: Any) -> dict[str, Any]:
        d, common = self.defaults, dict(continuous_update=False, style={"description_width": "initial"})
        return {"temperature": widgets.FloatSlider(value=d["temperature"], min=0.05, max=3.0, step=0.05,
                                                   description="temperature \u03c4", **common),
                "top_k": widgets.IntSlider(value=d["top_k"], min=1, max=self.vocab_size, description="top-k",
                                           **common),
                "top_p": widgets.FloatSlider(value=d["top_p"], min=0.01, max=1.0, step=0.01, description="top-p",
                                             **common),
                "seed": widgets.BoundedIntText(value=d["seed"], min=0, max=2**31 - 1, description="seed",
                                               style=common["style"])}


# ----------------------------------------------------------------------------- attention
@dataclass(frozen=True)
class AttentionView:
    """One head's attention weights (T, T) for a prompt, rows the queries, and the tokens' labels."""
    layer: int
    head: int
    weights: NDArray[np.floating]
    tokens: list[str]


class AttentionExplorer(Explorer):
    """The attention weights of one layer and head of ``model`` for a prompt: text through
    ``tokenizer``, or (without one) token ids separated by spaces. The last block_size tokens count."""

    def __init__(self, model: GPT, prompt: str, tokenizer: Tokenizer | None = None) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.defaults = dict(layer=0, head=0, prompt=prompt)

    def compute(self, layer: int = 0, head: int = 0, prompt: str = "") -> AttentionView:
        """Row i of the weights is query i's softmax over the keys 0..i (GPT.attention_weights)."""
        c = self.model.config
        if not (0 <= check_int("layer", layer, low=0) < c.n_layer):
            raise UsageError(f"layer must be in [0, {c.n_layer}), got {layer}")
        if not (0 <= check_int("head", head, low=0) < c.n_head):
            raise UsageError(f"head must be in [0, {c.n_head}), got {head}")
        ids = _prompt_ids(prompt, self.tokenizer, c.block_size)
        weights = self.model.attention_weights(ids[None])[layer][0, head]
        return AttentionView(layer, head, weights, [_label(self.tokenizer, int(i)) for i in ids])

    def describe(self, result: AttentionView) -> str:
        looks = result.weights.argmax(-1)
        return f"layer {result.layer}, head {result.head}: query i looks most at key " + \
            ", ".join(f"{i}\u2192{j}" for i, j in enumerate(looks))

    def draw(self, result: AttentionView) -> Figure:
        return plot_attention_pattern(result.weights, tokens=result.tokens,
                                      title=f"Attention weights, layer {result.layer}, head {result.head}")

    def make_controls(self, widgets: Any) -> dict[str, Any]:
        c, d = self.model.config, self.defaults
        return {"layer": widgets.IntSlider(value=d["layer"], min=0, max=c.n_layer - 1, description="layer"),
                "head": widgets.IntSlider(value=d["head"], min=0, max=c.n_head - 1, description="head"),
                "prompt": widgets.Text(value=d["prompt"], description="prompt", continuous_update=False)}


# ----------------------------------------------------------------------------- quantization
@dataclass(frozen=True)
class QuantizationView:
    """A weight matrix quantized and read back: its error and what it takes to store."""
    bits: int
    group_size: int | None
    errors: NDArray[np.floating]        # w - w_hat, the matrix's shape
    relative_error: float               # ||w - w_hat||_F / ||w||_F
    max_error: float                    # max |w - w_hat|
    integer_bytes: int                  # int8: one byte a weight; int4: two weights a byte
    scale_bytes: int
    float_bytes: int                    # the matrix as it was

    @property
    def total_bytes(self) -> int:
        return self.integer_bytes + self.scale_bytes


class QuantizationExplorer(Explorer):
    """Bits and group size against the reconstruction error and bytes of one (in, out) weight
    matrix, quantized per output channel (axis 1) by :func:`npgpt.allocation.quantize.quantize_tensor`."""

    def __init__(self, weight: ArrayLike, name: str = "W", bits: int = 4, group_size: int | None = None) -> None:
        super().__init__()
        self.weight, self.name = np.asarray(weight), name
        if self.weight.ndim != 2:
            raise UsageError(f"weight must be a 2-D (in, out) matrix, got shape {self.weight.shape}")
        self.defaults = dict(bits=bits, group_size=group_size)

    def group_sizes(self) -> list[int | None]:
        """None (one scale a channel) and the powers of two from 8 that divide the rows, below them."""
        rows = self.weight.shape[0]
        return [None] + [g for g in (2 ** k for k in range(3, 16)) if g < rows and rows % g == 0]

    def compute(self, bits: int = 8, group_size: int | None = None) -> QuantizationView:
        """Quantize, dequantize, compare; int4 is counted as stored, two values a byte (pack_int4)."""
        w = self.weight
        q, scale = quantize_tensor(w, bits, axis=1, group_size=group_size)
        errors = w - dequantize_tensor(q, scale, axis=1, group_size=group_size)
        integers = q.nbytes if bits == 8 else pack_int4(q, axis=0).nbytes
        return QuantizationView(bits, group_size, errors, float(np.linalg.norm(errors) / np.linalg.norm(w)),
                                float(np.abs(errors).max()), int(integers), int(scale.nbytes), int(w.nbytes))

    def describe(self, result: QuantizationView) -> str:
        return (f"int{result.bits}, {self._grouping(result.group_size)}: relative error "
                f"{result.relative_error:.3%}, largest {result.max_error:.2e}; {result.total_bytes:,} bytes "
                f"({result.integer_bytes:,} of integers + {result.scale_bytes:,} of scales) against "
                f"{result.float_bytes:,} as {self.weight.dtype} ({result.float_bytes / result.total_bytes:.1f}x smaller)")

    @staticmethod
    def _grouping(group_size: int | None) -> str:
        return "one scale per channel" if group_size is None else f"groups of {group_size} rows"

    def draw(self, result: QuantizationView) -> Figure:
        fig = Figure(figsize=(11, 3.4), layout="constrained")
        hist, sizes = fig.subplots(1, 2, width_ratios=[1.6, 1])
        g, ratio = result.group_size, result.float_bytes / result.total_bytes
        grouping = label(self._grouping(g), "每个通道一个缩放因子" if g is None else f"每组 {g} 行")
        hist.hist(result.errors.ravel(), bins=120, color="C0")
        hist.set(xlabel=label(r"reconstruction error $w - \hat w$", r"重建误差 $w - \hat w$"),
                 ylabel=label("weights", "权重个数"),
                 title=label(f"{self.name} {self.weight.shape}, int{result.bits}, {grouping}: "
                             f"relative error {result.relative_error:.2%}",
                             f"{self.name} {self.weight.shape}，int{result.bits}，{grouping}："
                             f"相对误差 {result.relative_error:.2%}"))
        parts = {label("integers", "整数"): result.integer_bytes, label("scales", "缩放因子"): result.scale_bytes}
        sizes.barh([str(self.weight.dtype)], [result.float_bytes], color="0.6")
        left = 0
        for k, (part, n) in enumerate(parts.items()):
            sizes.barh([f"int{result.bits}"], [n], left=left, color=f"C{k}", label=part)
            left += n
        sizes.set(xlabel=label("bytes", "字节"),
                  title=label(f"{result.total_bytes:,} bytes, {ratio:.1f}x smaller",
                              f"{result.total_bytes:,} 字节，缩小为原来的 1/{ratio:.1f}"))
        sizes.legend(fontsize=8, loc="lower right")
        return fig

    def make_controls(self, widgets: Any) -> dict[str, Any]:
        d = self.defaults
        options = [(self._grouping(g), g) for g in self.group_sizes()]
        return {"bits": widgets.ToggleButtons(options=[("int8", 8), ("int4", 4)], value=d["bits"], description="bits"),
                "group_size": widgets.Dropdown(options=options, value=d["group_size"], description="group size")}


# ----------------------------------------------------------------------------- the planner
@dataclass(frozen=True)
class PlannerView:
    """The budgets given (FLOPs, bytes per rank, hours or None) and the plan made for them."""
    flops: float
    memory: float
    hours: float | None
    plan: Plan

    def used(self) -> dict[str, tuple[float, float]]:
        """Budget name -> (what the plan uses, the budget)."""
        p = self.plan
        used = {"compute (FLOPs)": (p.flops, self.flops), "memory per rank (bytes)": (p.memory_bytes_per_rank, self.memory)}
        if self.hours is not None:
            used["time (s)"] = (p.wall_seconds, 3600 * self.hours)
        return used


# The budgets' names in the planner's figure, for the Chinese edition (npgpt.plots.labels).
_BUDGETS_ZH = {"compute (FLOPs)": "计算（FLOPs）", "memory per rank (bytes)": "每个 rank 的内存（字节）",
               "time (s)": "时间（秒）", "compute": "计算", "memory": "内存", "time": "时间"}


class PlannerExplorer(Explorer):
    """Budgets in, a plan out (:func:`npgpt.allocation.planner.plan`). The FLOP rate behind its
    wall times is measured once (``flop_rate=None``: a real step of the default budget's
    compute-optimal shape on this machine, :func:`~npgpt.allocation.planner.measured_flop_rate`)
    and then kept, so moving a control plans in a moment."""

    def __init__(self, flops: float = 1e13, memory: float = 64e6, hours: float | None = None, ranks: int = 1,
                 flop_rate: float | None = None, network: str = "10GbE") -> None:
        super().__init__()
        self.network, self.law = network, load_law()
        self.defaults = dict(flops=flops, memory=memory, hours=hours, ranks=ranks)
        if flop_rate is None:
            flop_rate = measured_flop_rate(shape_for(self.law.optimal(parse_flops(flops))[0]), Recipe().batch_size)
        self.flop_rate = flop_rate

    def compute(self, flops: float = 1e13, memory: float = 64e6, hours: float | None = None,
                ranks: int = 1) -> PlannerView:
        """The plan for these budgets (a :class:`~npgpt.allocation.planner.PlanError` when none fits)."""
        made = plan(flops, memory, hours, ranks, flop_rate=self.flop_rate, network=self.network, law=self.law)
        return PlannerView(parse_flops(flops), parse_bytes(memory), None if hours is None else float(hours), made)

    def values(self) -> dict[str, Any]:
        values = super().values()
        values["hours"] = values["hours"] if values.pop("limit_time") else None
        return values

    def describe(self, result: PlannerView) -> str:
        return format_plan(result.plan)

    def draw(self, result: PlannerView) -> Figure:
        used, p = result.used(), result.plan
        c = cast(GPTConfig, p.config)
        fig = Figure(figsize=(10, 1.2 + 0.6 * len(used)), layout="constrained")
        ax = fig.subplots()
        names = list(used)
        shares = [u / b for u, b in used.values()]
        ax.barh(names, [1.0] * len(names), color="0.88")
        ax.barh(names, shares, color=["C3" if n.split()[0] == p.binding else "C0" for n in names])
        for k, (u, b) in enumerate(used.values()):
            ax.text(shares[k] + 0.01, k, label(f"{u:.3g} of {b:.3g}", f"{u:.3g} / {b:.3g}"), va="center", fontsize=9)
        ax.set_yticks(range(len(names)), [label(n, _BUDGETS_ZH.get(n, n)) for n in names])
        ax.set(xlim=(0, 1.35), xlabel=label("share of each budget the plan uses (red: the one that binds)",
                                            "方案用掉的各项预算份额（红色：起决定作用的那一项）"),
               title=label(f"plan: n_layer={c.n_layer}, n_embd={c.n_embd}, {p.tokens:,} tokens on {p.ranks} rank(s)\n"
                           f"predicted loss {p.loss:.3f}{' (extrapolated)' if p.extrapolated else ''}; {p.binding} binds",
                           f"方案：n_layer={c.n_layer}, n_embd={c.n_embd}，{p.tokens:,} 个词元，{p.ranks} 个 rank\n"
                           f"预测损失 {p.loss:.3f}{'（外推）' if p.extrapolated else ''}；"
                           f"起决定作用的是{_BUDGETS_ZH.get(p.binding, p.binding)}"))
        ax.invert_yaxis()
        return fig

    def make_controls(self, widgets: Any) -> dict[str, Any]:
        d, common = self.defaults, dict(continuous_update=False, readout_format=".2g",
                                        style={"description_width": "initial"})
        return {"flops": widgets.FloatLogSlider(value=d["flops"], base=10, min=11, max=16, step=0.1,
                                                description="compute (FLOPs)", **common),
                "memory": widgets.FloatLogSlider(value=d["memory"], base=10, min=5, max=11, step=0.1,
                                                 description="memory per rank (bytes)", **common),
                "limit_time": widgets.Checkbox(value=d["hours"] is not None, description="limit the time"),
                "hours": widgets.FloatLogSlider(value=d["hours"] or 1.0, base=10, min=-2, max=2, step=0.1,
                                                description="hours", **common),
                "ranks": widgets.Dropdown(options=[1, 2, 4, 8, 16], value=d["ranks"], description="ranks")}
