"""``npgpt train --config run.toml``: every setting from a TOML file, flags winning over it;
``--print-config`` writes what ``--config`` reads back; a bad file is one line naming it, the key
and what was expected."""
import tomllib

import pytest

from npgpt.cli import main
from npgpt.io.checkpoint import read_checkpoint

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 16, "batch_size": 4, "eval_interval": 3,
        "eval_iters": 2, "final_eval_iters": 2, "warmup_iters": 2, "max_iters": 3, "sample_tokens": 0}


def write(path, settings: dict) -> str:
    lines = [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in settings.items()]
    path.write_text("\n".join(lines).replace("True", "true").replace("False", "false") + "\n", encoding="utf-8")
    return str(path)


def printed(capsys, *argv) -> str:
    assert main(["train", "--print-config", *argv]) == 0
    return capsys.readouterr().out


def test_print_config_is_toml_that_config_reads_back(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = printed(capsys, "--n-embd", "64", "--lr", "0.002", "--no-bias")
    settings = tomllib.loads(first)
    assert settings["n_embd"] == 64 and settings["lr"] == 0.002 and settings["bias"] is False
    assert settings["n_layer"] == 4 and settings["model"] == "gpt" and settings["max_iters"] == 2000   # resolved
    (tmp_path / "run.toml").write_text(first, encoding="utf-8")
    assert printed(capsys, "--config", "run.toml") == first
    assert not (tmp_path / "runs").exists()                     # printing trains nothing


def test_flags_win_over_the_file(tmp_path, capsys):
    config = write(tmp_path / "run.toml", {"lr": 0.002, "n_embd": 64, "dropout": 0.1})
    settings = tomllib.loads(printed(capsys, "--config", config, "--lr", "0.003"))
    assert settings["lr"] == 0.003 and settings["n_embd"] == 64 and settings["dropout"] == 0.1


def test_a_recurrent_model_from_a_file(tmp_path, capsys):
    config = write(tmp_path / "run.toml", {"model": "gru", "n_hidden": 32})
    settings = tomllib.loads(printed(capsys, "--config", config))
    assert settings["model"] == "gru" and settings["n_hidden"] == 32 and "n_head" not in settings


@pytest.mark.slow
def test_a_run_trains_with_the_files_settings(corpus, tmp_path, capsys):
    config = write(tmp_path / "run.toml", {**TINY, "data": str(corpus), "out_dir": str(tmp_path / "run"),
                                           "lr": 0.002, "seed": 7})
    assert main(["train", "--config", config, "--no-progress"]) == 0
    meta, _ = read_checkpoint(tmp_path / "run" / "ckpt.npz")
    assert meta["step"] == 3 and meta["train_config"]["lr"] == 0.002 and meta["train_config"]["seed"] == 7
    assert meta["model_config"].n_embd == 16
    capsys.readouterr()
    more = write(tmp_path / "more.toml", {"max_iters": 4, "n_embd": 32})      # a resume names the file's keys
    assert main(["train", "--config", more, "--data", str(corpus), "--out-dir", str(tmp_path / "run"), "--resume"]) == 2
    assert f"n_embd (in {more}) 32 (the checkpoint has 16)" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("n_emb = 16\n", "run.toml: unknown key 'n_emb' (did you mean n_embd?)"),
    ("n_embd = -3\n", "run.toml: n_embd must be a positive integer, got -3"),
    ("n_embd = 2.5\n", "run.toml: n_embd must be a positive integer, got 2.5"),
    ("lr = 'fast'\n", "run.toml: lr must be a finite number >= 0, got 'fast'"),
    ("dropout = 1.0\n", r"run.toml: dropout must be in [0, 1), got 1.0"),
    ("optimizer = 'adam'\n", "run.toml: optimizer must be 'adamw' or 'sgd', got 'adam'"),
    ("bias = 1\n", "run.toml: bias must be true or false, got 1"),
    ("zero = 2\n", "run.toml: zero must be 0 or 1, got 2"),
    ("threads = 'two'\n", "run.toml: threads: threads must be 'auto' or a whole number of threads >= 1, got 'two'"),
    ("[model]\nn_embd = 16\n", "run.toml: [model] is a table, expected a value"),
    ("n_embd 16\n", "--config run.toml is not valid TOML: Expected '=' after a key"),
    (b"lr = 0.1 \xff\n", "--config run.toml is not UTF-8 text"),
])
def test_a_bad_file_is_one_line_naming_the_file_the_key_and_what_was_expected(text, message, tmp_path, capsys,
                                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert main(["train", "--config", "run.toml", "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err, err


@pytest.mark.parametrize("where, message", [("missing.toml", "--config missing.toml: no such file"),
                                            (".", "--config . is a folder, expected a TOML file")])
def test_a_missing_file_or_a_folder_is_one_line(where, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", where]) == 2
    assert capsys.readouterr().err.strip() == f"npgpt train: error: {message}"


def test_settings_the_checks_refuse_together_are_found_before_training(tmp_path, capsys):
    config = write(tmp_path / "run.toml", {"lr": 0.001, "min_lr": 0.01})
    assert main(["train", "--config", config, "--print-config"]) == 2
    assert "min_lr 0.01 is above lr 0.001" in capsys.readouterr().err
