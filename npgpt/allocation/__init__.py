"""Global optimal allocation (document sections 2 and 7): what a model costs in compute, memory,
disk and time, and four ways to make it cost less (quantization, pruning, low rank, distillation),
each with its price in quality measured on the same model."""
