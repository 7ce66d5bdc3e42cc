"""``python -m npgpt``: train, resume, sample with every strategy, one-line errors, --help."""
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from references import missing_reference, optional_reference

from npgpt.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
        "--eval-interval", "3", "--eval-iters", "2", "--final-eval-iters", "2", "--no-progress",
        "--warmup-iters", "2"]


def train(corpus, out_dir, *extra):
    return main(["train", "--data", str(corpus), "--out-dir", str(out_dir), *TINY, *extra])


@pytest.mark.slow
def test_train_prints_summary_and_writes_outputs(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path / "run", "--max-iters", "6", "--sample-tokens", "20") == 0
    out = capsys.readouterr().out
    assert re.search(r"^final: step=6 train_loss=\d+\.\d{4} val_loss=\d+\.\d{4} corpus=file wall_s=\d+\.\d$", out, re.M)
    assert "sample:" in out and "corpus: text file" in out
    assert (tmp_path / "run" / "ckpt.npz").is_file() and (tmp_path / "run" / "loss.png").is_file()


@pytest.mark.slow
def test_resume_continues_to_more_steps(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path / "run", "--max-iters", "3", "--sample-tokens", "0") == 0
    assert train(corpus, tmp_path / "run", "--max-iters", "6", "--sample-tokens", "0", "--resume") == 0
    out = capsys.readouterr().out
    assert "resuming from" in out and "at step 3" in out and "final: step=6" in out


@pytest.mark.parametrize("strategy", ["greedy", "temperature", "top-k", "top-p", "beam"])
@pytest.mark.slow
def test_sample_with_each_strategy(corpus, tmp_path, capsys, strategy):
    train(corpus, tmp_path / "run", "--max-iters", "2", "--sample-tokens", "0")
    capsys.readouterr()
    code = main(["sample", "--ckpt", str(tmp_path / "run" / "ckpt.npz"), "--prompt", "To be",
                 "--strategy", strategy, "--max-new-tokens", "12"])
    assert code == 0
    text = capsys.readouterr().out
    assert text.startswith("To be") and len(text.rstrip("\n")) >= len("To be") + 1


@pytest.mark.slow
def test_sampling_is_seeded(corpus, tmp_path, capsys):
    train(corpus, tmp_path / "run", "--max-iters", "2", "--sample-tokens", "0")
    args = ["sample", "--ckpt", str(tmp_path / "run" / "ckpt.npz"), "--strategy", "temperature",
            "--temperature", "1.5", "--max-new-tokens", "30", "--seed", "7"]
    capsys.readouterr()
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first


@pytest.mark.parametrize("argv, message", [
    (["sample", "--ckpt", "no/such/ckpt.npz"], "checkpoint 'no/such/ckpt.npz' does not exist"),
    (["train", "--data", "no/such/file.txt", "--max-iters", "1"], "no/such/file.txt"),
    (["train", "--data", "fallback", "--n-head", "3", "--max-iters", "1"], "not divisible by n_head=3"),
    # an empty folder name would be '.', the current folder: refused, not written into
    (["train", "--data", "fallback", "--out-dir", "", "--max-iters", "1"], "--out-dir is empty"),
    (["prune", "--ckpt", "ckpt.npz", "--out-dir", " "], "--out-dir is empty"),
    # the user lowered lr and never gave min_lr: the message says how the two relate
    (["train", "--data", "fallback", "--lr", "0", "--max-iters", "1"], "min_lr 0.0001 is above lr 0"),
])
def test_user_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_too_short_corpus_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    short = tmp_path / "short.txt"
    short.write_text("abc", encoding="utf-8")
    assert train(short, tmp_path / "run", "--max-iters", "1") == 2
    assert "too few for block_size=16" in capsys.readouterr().err


def test_bad_flag_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--lr", "fast"])
    assert exit_info.value.code == 2
    assert "argument --lr: expected a number, got 'fast'" in capsys.readouterr().err


@pytest.mark.slow
def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, "-m", "npgpt", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for flag in ["--data", "--preset", "--n-layer", "--n-head", "--n-embd", "--block-size", "--dropout",
                 "--lr", "--min-lr", "--warmup-iters", "--weight-decay", "--beta2", "--grad-clip",
                 "--max-iters", "--batch-size", "--out-dir", "--resume", "--optimizer"]:
        assert flag in out, flag
    sample_help = subprocess.run([sys.executable, "-m", "npgpt", "sample", "--help"], capture_output=True,
                                 text=True, check=True).stdout
    assert "greedy,temperature,top-k,top-p,beam" in sample_help


def test_params_command_reports_the_documents_claim(capsys):
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "150,000,000" in out and "80,778,240" in out and "111,133,456" in out


# ----------------------------------------------------------------------------- recurrent models
RECURRENT = ["--n-layer", "2", "--n-embd", "8", "--n-hidden", "16", "--block-size", "16", "--batch-size", "4",
             "--eval-interval", "3", "--eval-iters", "2", "--final-eval-iters", "2", "--no-progress",
             "--warmup-iters", "2", "--dropout", "0.1"]


def train_recurrent(corpus, out_dir, cell, *extra):
    return main(["train", "--data", str(corpus), "--out-dir", str(out_dir), "--model", cell, *RECURRENT, *extra])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.slow
def test_recurrent_model_trains_checkpoints_and_samples(corpus, tmp_path, capsys, cell):
    from npgpt import RecurrentLM
    from npgpt.io.checkpoint import model_from_checkpoint
    assert train_recurrent(corpus, tmp_path / "run", cell, "--max-iters", "4", "--sample-tokens", "20") == 0
    out = capsys.readouterr().out
    assert "model: RecurrentLM" in out and f"cell='{cell}'" in out and "n_hidden=16" in out
    assert re.search(r"^final: step=4 train_loss=\d+\.\d{4} val_loss=\d+\.\d{4}", out, re.M)
    model = model_from_checkpoint(tmp_path / "run" / "ckpt.npz")
    assert isinstance(model, RecurrentLM) and model.config.cell == cell and model.config.n_layer == 2


@pytest.mark.slow
def test_recurrent_resume_reproduces_an_uninterrupted_run(corpus, tmp_path, capsys, monkeypatch):
    """Interrupted at step 3 (Ctrl-C), then resumed: the losses and weights of an uninterrupted run."""
    import os
    import signal

    import numpy as np

    from npgpt.io.checkpoint import read_checkpoint
    from npgpt.training.trainer import Trainer
    assert train_recurrent(corpus, tmp_path / "full", "lstm", "--max-iters", "6", "--sample-tokens", "0") == 0

    real_step = Trainer.train_step

    def step_until_ctrl_c(self):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGINT)       # during step 3: the run stops after it
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", step_until_ctrl_c)
    assert train_recurrent(corpus, tmp_path / "cut", "lstm", "--max-iters", "6", "--sample-tokens", "0") == 130
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert read_checkpoint(tmp_path / "cut" / "ckpt.npz")[0]["step"] == 3
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "cut"), "--resume",
                 "--max-iters", "6", "--no-progress", "--sample-tokens", "0",
                 "--final-eval-iters", "2"]) == 0                 # --model left out: the checkpoint's
    assert "resuming from" in capsys.readouterr().out

    (_, full), (_, resumed) = (read_checkpoint(tmp_path / d / "ckpt.npz") for d in ("full", "cut"))
    np.testing.assert_array_equal(resumed["history/train_loss"], full["history/train_loss"])
    assert resumed["history/train_loss"].size == 6
    for key in full:
        if key.startswith("param/"):
            np.testing.assert_array_equal(resumed[key], full[key], err_msg=key)


@pytest.mark.parametrize("strategy", ["greedy", "temperature", "top-k", "top-p", "beam"])
@pytest.mark.slow
def test_recurrent_sample_with_each_strategy_cached_or_not(corpus, tmp_path, capsys, strategy):
    train_recurrent(corpus, tmp_path / "run", "gru", "--max-iters", "2", "--sample-tokens", "0")
    capsys.readouterr()
    texts = []
    for cache in ([], ["--no-cache"]):
        assert main(["sample", "--ckpt", str(tmp_path / "run" / "ckpt.npz"), "--prompt", "To be",
                     "--strategy", strategy, "--max-new-tokens", "24", "--seed", "3", *cache]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0].startswith("To be") and len(texts[0].rstrip("\n")) >= len("To be") + 1
    assert texts[0] == texts[1]                  # the carried state changes nothing but speed


@pytest.mark.parametrize("extra, message", [
    (["--model", "lstm", "--n-head", "2"], "--n-head is a GPT option; a recurrent model (--model lstm)"),
    (["--model", "gru", "--bias"], "--bias is a GPT option"),
    (["--model", "rnn", "--no-tie-weights", "--pos-encoding", "sinusoidal"],
     "--pos-encoding, --tie-weights are GPT options"),
    (["--n-hidden", "32"], "--n-hidden is an option of the recurrent models (--model lstm, gru or rnn); a GPT takes"),
    (["--model", "lstm", "--preset", "small"], "--preset small is a GPT shape; recurrent models have baby"),
])
def test_bad_model_flag_combinations_are_one_line_errors(extra, message, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["train", "--data", "fallback", "--out-dir", str(tmp_path / "run"), "--max-iters", "1",
                 *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "run" / "ckpt.npz").exists()


@pytest.mark.slow
def test_resuming_with_another_model_family_is_a_one_line_error(corpus, tmp_path, capsys):
    train_recurrent(corpus, tmp_path / "run", "lstm", "--max-iters", "1", "--sample-tokens", "0")
    capsys.readouterr()
    assert train(corpus, tmp_path / "run", "--model", "gru", "--max-iters", "2", "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert "--model gru does not match" in err and "whose model is lstm" in err and "\n" not in err


@pytest.mark.slow
def test_help_documents_the_model_flags():
    out = subprocess.run([sys.executable, "-m", "npgpt", "train", "--help"], capture_output=True,
                         text=True, check=True).stdout
    flat = " ".join(out.split())
    assert "--model {gpt,lstm,gru,rnn}" in flat and "--n-hidden N_HIDDEN" in flat
    assert "state width of a recurrent model" in flat and "(gpt only)" in flat


# ----------------------------------------------------------------------------- a GPT-2 folder
@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """A small GPT-2 folder written by npgpt (random weights, a trained GPT-2 style tokenizer)."""
    import npgpt
    tokenizer = npgpt.BPETokenizer("gpt2").train("the cat sat on the mat. " * 30, 265,
                                                  special_tokens=["<|endoftext|>"])
    model = npgpt.GPT(npgpt.GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2,
                                      n_embd=8))
    return model.save_pretrained(tmp_path_factory.mktemp("gpt2") / "tiny", tokenizer=tokenizer)


@pytest.mark.parametrize("strategy", ["greedy", "top-p", "beam"])
def test_sample_from_a_pretrained_folder(gpt2_folder, capsys, strategy):
    argv = ["sample", "--pretrained", str(gpt2_folder), "--prompt", "the cat", "--max-new-tokens", "20",
            "--strategy", strategy]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert first.startswith("the cat") and len(first) > len("the cat\n")
    main(argv)
    assert capsys.readouterr().out == first          # seeded


def test_sample_pretrained_errors_are_one_line(gpt2_folder, tmp_path, capsys):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(gpt2_folder, broken)
    (broken / "model.safetensors").unlink()
    assert main(["sample", "--pretrained", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("broken/model.safetensors: missing") and "\n" not in err
    shutil.copy(gpt2_folder / "model.safetensors", broken)
    (broken / "vocab.json").unlink()
    (broken / "merges.txt").unlink()
    assert main(["sample", "--pretrained", str(broken)]) == 2
    assert "has no vocab.json and merges.txt: sampling needs GPT-2's tokenizer" in capsys.readouterr().err
    assert main(["sample", "--pretrained", str(gpt2_folder), "--prompt", ""]) == 2
    assert "--prompt is empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--pretrained", str(gpt2_folder), "--ckpt", "x.npz"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample"])
    assert "one of the arguments --ckpt --pretrained is required" in capsys.readouterr().err


def test_eval_of_a_pretrained_folder_scores_text_with_its_tokenizer(gpt2_folder, tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat on the mat. " * 60)
    assert main(["eval", "--pretrained", str(gpt2_folder), "--data", str(corpus), "--no-progress"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("val: "))
    loss = float(line.split("loss=")[1].split()[0])
    perplexity = float(line.split("perplexity=")[1].split()[0])
    assert np.isfinite(loss) and perplexity == pytest.approx(np.exp(loss), rel=1e-3)
    with pytest.raises(SystemExit):
        main(["eval", "--pretrained", str(gpt2_folder), "--ckpt", "x.npz"])
    assert "not allowed with argument" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a fresh machine (issue 23)
def offline(monkeypatch, tmp_path):
    """No Tiny Shakespeare anywhere and no network: the machine a newcomer may be on."""
    from npgpt.text import corpus as corpus_module

    def no_network(url, timeout):
        raise OSError("network is unreachable (test)")
    monkeypatch.delenv("NPGPT_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(corpus_module, "_fetch_url", no_network)


def test_offline_fallback_is_said_at_the_start_in_the_summary_and_in_the_checkpoint(tmp_path, monkeypatch, capsys):
    from npgpt.io.checkpoint import read_checkpoint
    offline(monkeypatch, tmp_path)
    assert main(["train", "--data", "shakespeare", "--out-dir", str(tmp_path / "run"), *TINY,
                 "--max-iters", "2", "--sample-tokens", "0"]) == 0
    out, err = capsys.readouterr()
    notes = err.splitlines()        # warnings: on stderr, and kept by --quiet
    assert notes[0].startswith("NOTE: training on the built-in fallback corpus") and "NOT Tiny Shakespeare" in notes[0]
    assert "network is unreachable (test)" in notes[0] and "NPGPT_DATA_DIR" in notes[1]
    assert notes[-2].startswith("NOTE: trained on the built-in fallback corpus")
    final = next(line for line in out.splitlines() if line.startswith("final:"))
    assert " corpus=fallback " in final
    meta, _ = read_checkpoint(tmp_path / "run" / "ckpt.npz")
    assert meta["corpus"] == "fallback"


def test_a_run_on_tiny_shakespeare_says_so_and_resuming_it_on_the_fallback_is_refused(tmp_path, monkeypatch,
                                                                                       capsys):
    from npgpt.text import corpus as corpus_module
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "tinyshakespeare.txt").write_text("First Citizen:\nspeak, speak.\n" * 40, encoding="utf-8")
    monkeypatch.setenv("NPGPT_DATA_DIR", str(data_dir))
    monkeypatch.setattr(corpus_module, "_has_expected_checksum", lambda path: True)   # a stand-in file
    run = tmp_path / "run"
    assert main(["train", "--data", "shakespeare", "--out-dir", str(run), *TINY, "--max-iters", "2",
                 "--sample-tokens", "0"]) == 0
    assert " corpus=tinyshakespeare " in capsys.readouterr().out
    offline(monkeypatch, tmp_path)
    assert main(["train", "--data", "shakespeare", "--out-dir", str(run), *TINY, "--max-iters", "4",
                 "--sample-tokens", "0", "--resume"]) == 2
    assert "was trained on corpus 'tinyshakespeare', but this run's corpus is 'fallback'" in capsys.readouterr().err


def test_a_second_run_into_the_same_folder_is_refused_and_the_first_is_kept(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(corpus, run, "--max-iters", "3", "--sample-tokens", "0") == 0
    before = (run / "ckpt.npz").read_bytes()
    capsys.readouterr()
    assert train(corpus, run, "--max-iters", "2", "--sample-tokens", "0") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"npgpt train: error: --out-dir {run} already holds a checkpoint ({run / 'ckpt.npz'}); "
                   f"continue it with --resume, replace it with --force, or choose another --out-dir")
    assert (run / "ckpt.npz").read_bytes() == before
    assert train(corpus, run, "--max-iters", "2", "--sample-tokens", "0", "--resume", "--force") == 2
    assert "give one of them" in capsys.readouterr().err
    assert (run / "ckpt.npz").read_bytes() == before
    assert train(corpus, run, "--max-iters", "2", "--sample-tokens", "0", "--force") == 0
    assert "final: step=2 " in capsys.readouterr().out


# ----------------------------------------------------------------------------- resume compares only what was given (issue 24)
@pytest.mark.slow
def test_resume_with_a_flag_equal_to_the_checkpoints_is_accepted(corpus, tmp_path, capsys):
    """The checkpoint has n_embd 16 (and n_layer 1, n_head 2, block 16, not the preset's): --n-embd 16
    changes nothing, so nothing is refused (before: refused, naming --n-layer, --n-head, --block-size)."""
    assert train(corpus, tmp_path / "run", "--max-iters", "2", "--sample-tokens", "0") == 0
    capsys.readouterr()
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--resume", "--n-embd", "16",
                 "--max-iters", "3", "--no-progress", "--sample-tokens", "0", "--final-eval-iters", "2"]) == 0
    assert "final: step=3" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_refuses_naming_only_the_flags_given(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path / "run", "--max-iters", "2", "--sample-tokens", "0") == 0
    capsys.readouterr()
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--resume", "--n-embd", "32",
                 "--max-iters", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--n-embd 32 (the checkpoint has 16)" in err and "\n" not in err
    for never_given in ("--n-layer", "--n-head", "--block-size", "--layer-norm-epsilon", "--seed"):
        assert never_given not in err, err


@pytest.mark.slow
def test_resuming_an_lstm_with_its_own_width_is_accepted(corpus, tmp_path, capsys):
    """Before: refused, naming --layer-norm-epsilon (a GPT field, and no flag at all)."""
    assert train_recurrent(corpus, tmp_path / "run", "lstm", "--max-iters", "2", "--sample-tokens", "0") == 0
    capsys.readouterr()
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--resume", "--n-embd", "8",
                 "--max-iters", "3", "--no-progress", "--sample-tokens", "0", "--final-eval-iters", "2"]) == 0
    assert "final: step=3" in capsys.readouterr().out
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--resume", "--n-hidden", "32",
                 "--max-iters", "4"]) == 2
    err = capsys.readouterr().err
    assert "--n-hidden 32 (the checkpoint has 16)" in err and "epsilon" not in err and "--n-embd" not in err


@pytest.mark.slow
def test_resume_with_another_preset_names_the_preset_and_what_differs(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path / "run", "--max-iters", "2", "--sample-tokens", "0") == 0
    capsys.readouterr()
    assert main(["train", "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--resume",
                 "--preset", "baby", "--n-layer", "1", "--max-iters", "3"]) == 2
    err = capsys.readouterr().err
    assert "--preset baby (block_size 64, n_head 4, n_embd 128; the checkpoint has block_size 16, n_head 2, " \
           "n_embd 16)" in err and "--n-layer" not in err


# ----------------------------------------------------------------------------- the parser
def test_the_parser_applies_the_dataclass_defaults_and_records_what_was_given():
    from dataclasses import fields

    from npgpt import TrainConfig
    from npgpt.cli import build_parser
    args = build_parser().parse_args(["train"])
    assert args.given == frozenset()
    assert {f.name: getattr(args, f.name) for f in fields(TrainConfig)} == vars(TrainConfig())
    assert args.n_embd is None and args.preset == "baby" and args.final_eval_iters == 400
    args = build_parser().parse_args(["train", "--lr", "0.001", "--n-embd", "16", "--no-bias", "--resume"])
    assert args.given == {"lr", "n_embd", "bias", "resume"} and args.lr == 0.001 and args.bias is False


def test_every_config_field_a_user_may_set_is_a_flag_with_its_help(capsys):
    from npgpt import GPTConfig, RecurrentConfig, TrainConfig
    from npgpt.models.config import options
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    for cls in (TrainConfig, GPTConfig, RecurrentConfig):
        for name, f in options(cls).items():
            assert f"--{name.replace('_', '-')}" in flat and f.metadata["help"] in flat, (cls.__name__, name)
    assert "(default: 2000)" in flat and "(default: the preset's)" in flat


def test_the_command_line_reads_no_argparse_internals():
    from pathlib import Path

    import npgpt.cli
    for path in Path(npgpt.cli.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "_actions" not in text and "deepcopy" not in text, path.name
    assert not hasattr(npgpt.cli, "CLIError")


# ----------------------------------------------------------------------------- errors: usage, bug, interrupt
def test_a_bug_inside_a_command_shows_its_traceback_and_asks_to_report_it(monkeypatch, capsys):
    """A ValueError that is not a UsageError is npgpt's bug, not the user's mistake: exit 1, traceback."""
    import npgpt.cli.params

    def broken(args):
        raise ValueError("an internal inconsistency")
    monkeypatch.setattr(npgpt.cli.params, "run", broken)
    assert main(["params"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: an internal inconsistency" in err
    assert err.strip().splitlines()[-1] == ("npgpt params: this is a bug in npgpt, not a mistake in the command: "
                                            "please report it with the traceback above and the command line: "
                                            "python -m npgpt params")


def test_ctrl_c_outside_a_training_loop_exits_130(monkeypatch, capsys):
    import npgpt.cli.params

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(npgpt.cli.params, "run", interrupted)
    assert main(["params"]) == 130
    assert capsys.readouterr().err.strip() == "npgpt params: interrupted"


# ----------------------------------------------------------------------------- -q and -v
def test_quiet_keeps_the_result_and_the_warnings(corpus, tmp_path, capsys, monkeypatch):
    assert train(corpus, tmp_path / "run", "--max-iters", "2", "--sample-tokens", "0", "-q") == 0
    out, err = capsys.readouterr()
    assert "final: step=2" in out and "checkpoint:" in out
    assert "model:" not in out and "corpus:" not in out and "step 2: train loss" not in out
    offline(monkeypatch, tmp_path)
    assert main(["train", "--data", "shakespeare", "--out-dir", str(tmp_path / "fallback"), *TINY,
                 "--max-iters", "2", "--sample-tokens", "0", "--quiet"]) == 0
    assert "NOTE: training on the built-in fallback corpus" in capsys.readouterr().err


def test_verbose_adds_debug_lines_and_the_default_shows_info(corpus, tmp_path, capsys):
    assert train(corpus, tmp_path / "a", "--max-iters", "2", "--sample-tokens", "0") == 0
    out = capsys.readouterr().out
    assert "model: GPT" in out and "step 2: train loss" in out and "runtime: threading layer" not in out
    assert train(corpus, tmp_path / "b", "--max-iters", "2", "--sample-tokens", "0", "--verbose") == 0
    assert "runtime: threading layer" in capsys.readouterr().out
    assert main(["params", "-v"]) == 0 and "runtime: threading layer" in capsys.readouterr().out


def test_the_command_line_leaves_logging_as_it_found_it(capsys):
    import logging
    logger = logging.getLogger("npgpt")
    before = (logger.level, logger.propagate, list(logger.handlers))
    assert main(["params", "-q"]) == 0
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


# ----------------------------------------------------------------------------- under mpiexec (issue 28)
ONE_PROCESS_COMMANDS = [["params"], ["sample", "--ckpt", "x.npz"], ["eval", "--ckpt", "x.npz"], ["bench"],
                        ["costs"], ["plan", "--flops", "1e15", "--memory", "1e9"],
                        ["prune", "--ckpt", "x.npz", "--out-dir", "p"], ["app", "sentiment", "train"]]
LAUNCHED = {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1"}    # what Open MPI's mpiexec sets


def one_process_refusal(command: str, rank: int, size: int = 2) -> str:
    return (f"npgpt {command} (rank {rank} of {size}): error: npgpt {command} runs on one process, but mpiexec "
            f"started {size}: every rank would run it whole (and write the same files); start it without "
            f"mpiexec (npgpt train run data parallel)\n")


@pytest.mark.parametrize("argv", ONE_PROCESS_COMMANDS, ids=lambda argv: argv[0])
def test_under_mpiexec_every_command_but_train_refuses_in_one_line(argv, capsys, monkeypatch, tmp_path):
    """Before: each rank ran the whole command (mpiexec -n 2 ... app sentiment train trained twice into
    one file)."""
    monkeypatch.chdir(tmp_path)
    for name, value in LAUNCHED.items():
        monkeypatch.setenv(name, value)
    assert main(argv) == 2
    assert capsys.readouterr() == ("", one_process_refusal(argv[0], 1))
    assert list(tmp_path.iterdir()) == []


def test_under_a_launcher_without_mpi_the_refusal_comes_from_a_real_process(tmp_path):
    env = {**os.environ, "PMI_SIZE": "3", "PMI_RANK": "0"}                   # what MPICH's Hydra sets
    done = subprocess.run([sys.executable, "-m", "npgpt", "params"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", one_process_refusal("params", 0, 3))


def test_print_config_under_mpiexec_prints_once(capsys, monkeypatch):
    for name, value in LAUNCHED.items():
        monkeypatch.setenv(name, value)
    assert main(["train", "--print-config"]) == 0
    assert capsys.readouterr().out == ""                # rank 1 of 2: rank 0 prints it
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    assert main(["train", "--print-config"]) == 0
    assert "n_embd" in capsys.readouterr().out


MPIEXEC = shutil.which("mpiexec") or shutil.which("mpiexec", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="session")
def mpi():
    """mpi4py and an mpiexec, optional references (as in test_distributed.py): skipped without them."""
    optional_reference("mpi4py", reason="data-parallel training runs over MPI")
    if MPIEXEC is None:
        missing_reference("mpich", reason="no mpiexec on PATH or beside the Python executable")


@pytest.mark.usefixtures("mpi")
@pytest.mark.slow
def test_real_mpiexec_two_ranks_of_prune_both_refuse_and_write_nothing(tmp_path):
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "npgpt", "prune", "--ckpt", "x.npz",
                           "--out-dir", "p"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    assert sorted(done.stderr.splitlines(keepends=True)) == [one_process_refusal("prune", r) for r in (0, 1)]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("mpi")
@pytest.mark.slow
def test_sigterm_to_mpiexec_during_the_final_evaluation_with_zero_1_exits_143_cleanly(tmp_path):
    """Before: exit 15 and MPI's abort banner. mpiexec (Hydra) passes SIGTERM on to both ranks; they
    agree on it through the evaluation's Allreduce and end together, the checkpoint of the last
    step saved (--final-eval-iters 100000 keeps them in the final evaluation)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    out = tmp_path / "run"
    job = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "-m", "npgpt", "train", "--data", str(corpus),
                            "--out-dir", str(out), *TINY, "--max-iters", "3", "--zero", "1",
                            "--final-eval-iters", "100000", "--sample-tokens", "0"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_NUM_THREADS": "1",
                                "XDG_CACHE_HOME": str(tmp_path / "cache")})
    try:
        deadline = time.monotonic() + 120
        while not (out / "ckpt.npz").exists() and time.monotonic() < deadline and job.poll() is None:
            time.sleep(0.05)
        time.sleep(1.0)                                # into the final evaluation
        job.send_signal(signal.SIGTERM)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
    assert job.returncode == 143, stderr
    said = [line for line in (stdout + stderr).splitlines() if "stopped during the final evaluation" in line]
    assert said == [f"SIGTERM: stopped during the final evaluation; the checkpoint of step 3 is saved in "
                    f"{out / 'ckpt.npz'}"], stdout + stderr
    assert "Traceback" not in stderr and "MPI_Abort" not in stderr and "final:" not in stdout
    from npgpt.io.checkpoint import read_checkpoint
    assert read_checkpoint(out / "ckpt.npz")[0]["step"] == 3
