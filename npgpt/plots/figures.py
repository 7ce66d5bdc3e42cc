"""Every figure helper of npgpt in one import, for the notebooks and the command line:

    from npgpt.plots.figures import figure_path, figures_destination, save_figure, plot_loss_curve

Each helper is written in the module named by what it draws, and ends in the one finishing helper,
:func:`npgpt.plots.save.finish` (save when given a path, return the Figure):

| module | draws |
|---|---|
| :mod:`npgpt.plots.save` | nothing: where a figure goes (``figure_path``, ``NPGPT_FIGURES_DIR``) and writing it |
| :mod:`npgpt.plots.labels` | nothing: a label in the learner's language (``label(en, zh)``), and the CJK font it needs |
| :mod:`npgpt.plots.model` | the sinusoidal positional encoding, attention weights |
| :mod:`npgpt.plots.training` | a run's loss curve |
| :mod:`npgpt.plots.sequence_models` | recurrence against attention: gradient through time, loss by step and by second |
| :mod:`npgpt.plots.text` | BPE compression against vocabulary size, word vectors in two dimensions |
| :mod:`npgpt.plots.speed` | where a training step's time goes |
| :mod:`npgpt.plots.scaling` | the compute-optimal study: IsoFLOP profiles, N_opt and D_opt against compute |
"""
from .labels import label
from .model import plot_attention_pattern, plot_sinusoidal_encoding
from .save import FIGURES_ENV, FigurePath, figure_path, figures_destination, finish, save_figure
from .scaling import plot_compute_optimal, plot_isoflop
from .sequence_models import plot_sequence_model_losses, plot_vanishing_gradients
from .speed import plot_step_anatomy
from .text import plot_compression_curve, plot_word_projection
from .training import centred_mean, plot_loss_curve

__all__ = ["FIGURES_ENV", "FigurePath", "centred_mean", "figure_path", "figures_destination", "finish",
           "label", "plot_attention_pattern", "plot_compression_curve", "plot_compute_optimal", "plot_isoflop",
           "plot_loss_curve", "plot_sequence_model_losses", "plot_sinusoidal_encoding", "plot_step_anatomy",
           "plot_vanishing_gradients", "plot_word_projection", "save_figure"]
