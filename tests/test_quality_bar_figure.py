"""benchmarks/quality_bar.py --loss-figure: the README's loss curve (figures/baby_loss.png) is drawn
from a checkpoint's loss history, without training, and its title names the model and the corpus."""
import importlib.util
from pathlib import Path

import npgpt

ROOT = Path(__file__).resolve().parents[1]


def _quality_bar():
    spec = importlib.util.spec_from_file_location("quality_bar", ROOT / "benchmarks" / "quality_bar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(tmp_path, config_of, source):
    text = "to be or not to be, that is the question\n" * 40
    data = npgpt.Dataset(text, source=source)
    model = npgpt.GPT(config_of(data.vocab_size), seed=0)
    tc = npgpt.TrainConfig(max_iters=4, batch_size=2, eval_interval=2, eval_iters=1, warmup_iters=1)
    path = tmp_path / "ckpt.npz"
    with npgpt.use_backend("numpy"):
        npgpt.Trainer(model, data, tc).train(checkpoint_path=path, progress=False, log=lambda *_: None)
    return path, model.num_params()


def test_the_loss_figure_names_the_preset_its_parameters_and_the_corpus(tmp_path):
    path, n_params = _checkpoint(tmp_path, lambda v: npgpt.GPTConfig.preset("baby", vocab_size=v),
                                 "tinyshakespeare")
    figure = tmp_path / "baby_loss.png"
    title = _quality_bar().draw_loss_figure(str(path), str(figure))
    assert title == f"Training loss: GPT 'baby' preset ({n_params:,} parameters) on Tiny Shakespeare, 4 steps"
    assert figure.read_bytes().startswith(b"\x89PNG")


def test_a_configuration_that_is_no_preset_is_described(tmp_path):
    config = lambda v: npgpt.GPTConfig(vocab_size=v, block_size=8, n_layer=1, n_head=2, n_embd=8)
    path, n_params = _checkpoint(tmp_path, config, "fallback")
    title = _quality_bar().draw_loss_figure(str(path), str(tmp_path / "loss.png"))
    assert title == f"Training loss: GPT (1 layer, width 8) ({n_params:,} parameters) on the built-in fallback corpus, 4 steps"
