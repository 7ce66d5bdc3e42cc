"""What the README may say, rendered from the committed results: each table and each quoted number
of README.md is produced here from a file under ``benchmarks/results/`` (or from npgpt itself), so
a test can compare the README with it (``tests/test_readme.py``).

``python tests/readme_facts.py`` prints every fact, to paste into the README after a benchmark run
changed a result.
"""
import json
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


@cache
def result(name: str) -> dict:
    """A committed result file, ``name`` relative to benchmarks/results/ without ``.json``."""
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def duration(seconds: float) -> str:
    """28.2 ms, or 1.49 s from a second up."""
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio(x: float) -> str:
    return f"{x:.2f}x"


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


# ----------------------------------------------------------------------------- the two commands
def machine_line(machine: dict) -> str:
    flags = "AVX-512" if machine["avx512f"] else "AVX2" if machine["avx2"] else "no AVX2"
    return f"{machine['cpus']}-core {machine['model_name']} ({flags})"


def command_facts() -> list[str]:
    r = result("readme_commands")
    main, fallback, ev = r["main_command"], r["fallback_command"], r["eval_command"]
    return [
        f"final: step={main['step']} train_loss={main['train_loss']:.4f} val_loss={main['val_loss']:.4f} "
        f"corpus=tinyshakespeare",
        f"train_loss={fallback['train_loss']:.4f} val_loss={fallback['val_loss']:.4f} corpus=fallback",
        f"{main['seconds'] / 60:.1f} minutes",
        f"{r['test_command']['seconds'] / 60:.1f} minutes",
        f"{r['quick_loop']['seconds']:.0f} s",
        machine_line(r["machine"]),
        f"val: loss={ev['loss']:.4f} perplexity={ev['perplexity']:.4f} bits_per_char={ev['bits_per_char']:.4f}",
        f"{ev['tokens']:,} predicted characters",
    ]


def first_step_facts() -> list[str]:
    """The README main command's first training step, numba's cache empty and filled."""
    tree = next(iter(v for k, v in result("first_step")["after"]["trees"].items() if k.startswith("after")))
    return [f"first training step ends {tree['empty_cache']['first_step_s']:.1f} s after the command starts, "
            f"and {tree['filled_cache']['first_step_s']:.1f} s once numba's cache holds them"]


# ----------------------------------------------------------------------------- quality bar and speed
def quality_facts() -> list[str]:
    q = result("quality_bar")
    return [f"val loss of {q['npgpt']['val_loss']:.4f} in {q['npgpt']['wall_s']:.1f} s",
            f"{q['torch']['val_loss']:.4f} in {q['torch']['wall_s']:.1f} s"]


def training_speed_table(baby: dict, baby_fwd_bwd: dict, small: dict) -> str:
    """The training-speed table from three runs of ``npgpt bench`` (each contender's median step)."""
    def row(label, run, preset):
        t = run["presets"][preset]["training"]
        step = {name: duration(t[name]["ms_per_step"] / 1e3) for name in ("npgpt-numba", "npgpt-numpy", "torch-eager")}
        return (f"| {label} | {step['npgpt-numba']} | {step['npgpt-numpy']} | {step['torch-eager']} | "
                f"{ratio(t['npgpt-numba']['speed_vs_torch'])} |")
    return "\n".join([
        "| preset | npgpt, numba | npgpt, numpy | PyTorch eager | numba vs PyTorch |",
        "|---|---|---|---|---|",
        row("baby (4 layers, width 128, batch 12 x 64), with AdamW", baby, "baby"),
        row("baby, forward + backward only (`--no-update`)", baby_fwd_bwd, "baby"),
        row("small (6 layers, width 384, batch 16 x 256), with AdamW", small, "small"),
    ])


def speed_tables() -> list[str]:
    avx512 = training_speed_table(result("npgpt_bench"), result("npgpt_bench_fwd_bwd"), result("npgpt_bench"))
    avx2 = training_speed_table(result("avx2_emulation/npgpt_bench_baby"),
                                result("avx2_emulation/npgpt_bench_fwd_bwd"),
                                result("avx2_emulation/npgpt_bench_small"))
    return [avx512, avx2]


def speed_facts() -> list[str]:
    bench = result("npgpt_bench")
    gen = result("npgpt_bench_fwd_bwd")["generation_baby"]
    q = result("quantized_decode")
    return [
        f"{pct(bench['presets']['baby']['training']['npgpt-numba']['mfu'], 0)} of the machine's measured "
        f"matrix-product peak on baby and {pct(bench['presets']['small']['training']['npgpt-numba']['mfu'], 0)} on small",
        f"{gen['tokens_per_s_with_cache']:,.0f} tokens/s with the KV cache against "
        f"{gen['tokens_per_s_without_cache']:,.0f} without it",
        f"**{ratio(q['ratio_vs_float32']['int8'])}** the tokens per second of the float32 step",
    ]


def encoding_facts() -> list[str]:
    e = result("bpe_encode")["encode"]
    mb_s = e["mb_s"]
    return [f"Shakespeare at {mb_s['ours']:.1f} MB/s against tiktoken's {mb_s['tiktoken']:.1f} MB/s",
            f"`encode_batch` of {e['batch_texts']} texts on 2 threads at {mb_s['ours_batch_2_threads']:.1f} MB/s "
            f"against tiktoken's {mb_s['tiktoken_batch_2_threads']:.1f} MB/s"]


def contention_table() -> str:
    lines = ["| preset | contender | quiet | beside a busy process | busy / quiet |", "|---|---|---|---|---|"]
    names = {"npgpt-numba": "npgpt on 2 fixed threads", "npgpt-numba-auto": "npgpt adapting",
             "torch-eager": "PyTorch on 2 threads"}
    for run in result("contention"):
        for key, label in names.items():
            quiet, busy = run["quiet_ms"][key], run["busy_ms"][key]
            lines.append(f"| {run['preset']} | {label} (ended on {run['threads_busy'][key]}) | "
                         f"{duration(quiet / 1e3)} | {duration(busy / 1e3)} | {ratio(busy / quiet)} |")
    return "\n".join(lines)


def gpt2_table() -> str:
    runs = result("gpt2_bench")["runs"]
    names = {"npgpt-numba": "npgpt, float32", "npgpt-int8": "npgpt, int8 blocks",
             "npgpt-int8-all": "npgpt, int8 everywhere", "npgpt-int4-all": "npgpt, int4 everywhere",
             "torch-eager": "PyTorch eager"}
    lines = ["| threads | contender | forward, 1 x 256 tokens | generation, 50 tokens | bytes read a token "
             "| of the roofline | logits off by |", "|---|---|---|---|---|---|---|"]
    for run in runs.values():
        for key, label in names.items():
            c = run["contenders"][key]
            forward = f"{c['forward_ms']:,.0f} ms" if "forward_ms" in c else "-"
            error = "-" if c.get("logits_error") is None else pct(c["logits_error"], 1)
            lines.append(f"| {run['threads']} | {label} | {forward} | {c['generate_tokens_per_s']:.1f} tokens/s | "
                         f"{c['read_bytes_per_token'] / 1e6:,.0f} MB | {pct(c['roofline_fraction'], 0)} | {error} |")
    return "\n".join(lines)


def gpt2_facts() -> list[str]:
    """The memory bandwidth each run of the GPT-2 benchmark measured (its roofline's numerator), and the
    quantized prompt's time batched and token by token."""
    runs = result("gpt2_bench")["runs"]
    int8 = result("quantized_prompt")["formats"]["int8"]
    return [*(f"{run['read_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s" for run in runs.values()),
            f"256-token prompt took {int8['batched_s']:.2f} s in int8 against {int8['token_by_token_s']:.2f} s token by token"]


# ----------------------------------------------------------------------------- allocation
def allocation_facts() -> list[str]:
    d, s = result("distributed"), result("scaling")
    e, law = s["exponents"], s["loss_law"]
    return [
        f"**{ratio(d['speedup_2_ranks'])}** the tokens per second of 1 rank x 2 threads",
        f"alpha = {d['local_network']['latency_s'] * 1e6:.1f} µs, beta = {d['local_network']['bandwidth'] / 1e9:.1f} GB/s",
        f"**N_opt ∝ C^{e['a']:.2f}±{e['spread']['a_std']:.2f} and D_opt ∝ C^{e['b']:.2f}±{e['spread']['b_std']:.2f}**",
        f"(Chinchilla: about {(e['chinchilla']['a'] + e['chinchilla']['b']) / 2:.1f} each)",
        f"**{s['tokens_per_param']['geometric_mean']:.0f} characters per weight**",
        f"L(N, D) = {law['E']:.3f} + {law['A']:.2f}/N^{law['alpha']:.3f} + {law['B']:.0f}/D^{law['beta']:.3f}",
        f"{s['wall_seconds'] / 60:.0f} minutes on one core",
    ]


# ----------------------------------------------------------------------------- applications
FIVE = ("generation", "translation", "summarization", "qa", "sentiment")     # the article's section 5
APP_ROWS = (*FIVE, "chat")


def app_row(name: str, r: dict) -> str:
    trained = f"{r['steps']:,} steps, {r['train_seconds']:.1f} s"
    if name == "generation":
        b = r["baselines"]
        return (f"| generation | perplexity per character (lower is better) | **{r['model']:.2f}** | uniform "
                f"{b['uniform']:.1f}, unigram {b['unigram (add-one)']:.1f}, bigram {b['bigram (add-one)']:.1f} | "
                f"{r['params']:,} | {trained} |")
    if name == "translation":
        b, x = r["baselines"], r["baseline_exact_match"]
        return (f"| translation | BLEU (`zh`) / exact match | **{r['model']:.1f} / {pct(r['exact_match'], 0)}** "
                f"(beam {r['beam']['beam_width']}: {r['beam']['bleu']:.1f} / {pct(r['beam']['exact_match'], 0)}) | "
                f"word for word {b['word-for-word dictionary']:.1f} / {pct(x['word-for-word dictionary'])}, copy "
                f"{b['copy the source']:.2f} / {pct(x['copy the source'], 0)} | {r['params']:,} | {trained} |")
    if name == "summarization":
        lead = r["all_scores"]["lead sentence"]
        return (f"| summarization | ROUGE-L F (exact fact) | **{r['model']:.3f}** ({pct(r['all_scores']['model']['exact_fact'])}) "
                f"| lead sentence {lead['rougeL']:.3f} ({pct(lead['exact_fact'], 0)}) | {r['params']:,} | {trained} |")
    if name == "qa":
        b = r["baselines"]
        return (f"| qa | exact match (token F1) | **{pct(r['model'])}** ({r['token_f1']:.3f}) | most frequent answer "
                f"{pct(b['most frequent answer'])}, most frequent for the question "
                f"{pct(b['most frequent answer to the same question'])} | {r['params']:,} | {trained} |")
    if name == "chat":
        b, f1 = r["baselines"], r["baseline_token_f1"]
        return (f"| chat | exact match of the assistant's replies (token F1) | **{pct(r['model'])}** "
                f"({r['token_f1']:.3f}) | the same model before fine-tuning {pct(b['before fine-tuning'])} "
                f"({f1['before fine-tuning']:.3f}), retrieval {pct(b['retrieval (nearest user turn)'])} "
                f"({f1['retrieval (nearest user turn)']:.3f}) | {r['params']:,} | "
                f"{r['pretrain_steps']:,} + {r['steps']:,} steps, {r['train_seconds']:.1f} s |")
    b = r["baselines"]
    return (f"| sentiment | accuracy | **{pct(r['model'])}** | majority {pct(b['majority class'])}, bag-of-words "
            f"logistic regression {pct(b['bag-of-words logistic regression'])} | {r['params']:,} | {trained} |")


def applications_table() -> str:
    apps = result("applications")
    head = ["| app | metric | model | baselines | parameters | training |", "|---|---|---|---|---|---|"]
    return "\n".join(head + [app_row(name, apps[name]) for name in APP_ROWS])


def applications_facts() -> list[str]:
    apps = result("applications")
    qa, sent = apps["qa"], apps["sentiment"]
    return [
        f"`{qa['example_right']['input']}`",
        f"answers `{qa['example_right']['output']}`",
        f"{pct(qa['exact_match_by_question']['Who sold them?'], 0)} on \"Who sold them?\"",
        f"all of them right ({pct(sent['contrast_accuracy']['model'], 0)}), the bag of words "
        f"{pct(sent['contrast_accuracy']['bag-of-words logistic regression'], 0)}",
        f"{sum(a['train_seconds'] for a in (apps[n] for n in FIVE)):.0f} s of wall time for the five",
        *chat_facts(apps["chat"]),
    ]


def chat_facts(r: dict) -> list[str]:
    """The chat model's follow-ups (turns that name no product) against the retrieval baseline."""
    follow = r["follow_up_exact_match"]
    return [f"the chat model answers {pct(follow['model'])} of the follow-ups exactly, the retrieval baseline "
            f"{pct(follow['retrieval (nearest user turn)'])}",
            f"{pct(r['whole_dialogues_right']['model'])} of the test dialogues have all three replies right",
            f"{r['train_seconds']:.0f} s of wall time while other jobs kept both cores busy "
            f"({r['train_cpu_seconds']:.0f} CPU seconds)"]


# ----------------------------------------------------------------------------- everything
def tables() -> list[str]:
    return [*speed_tables(), contention_table(), gpt2_table(), applications_table()]


def facts() -> list[str]:
    return [*command_facts(), *first_step_facts(), *quality_facts(), *speed_facts(), *encoding_facts(), *gpt2_facts(), *allocation_facts(),
            *applications_facts()]


if __name__ == "__main__":
    for table in tables():
        print(table, end="\n\n")
    for fact in facts():
        print(fact)
