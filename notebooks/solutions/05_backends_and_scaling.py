"""Worked solutions to the exercises of ``notebooks/05_backends_and_scaling.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``. The blocks use the names the notebook defines (``mismatched``, ``np``). Try
the exercises before reading on.
"""

import numpy as np


# %% exercise-1
# From minikto/features.py and SoftmaxPolicy.__init__:
#   "onehot": a prompt table (P, V), a previous-token table (V + 1, V) (the extra row is the
#             begin-of-response state) and a bias (V): P V + (V + 1) V + V = V (P + V + 2);
#   features=d: the output layer (d, V) and the bias (V): V (d + 1). The random embeddings are
#             fixed, not trained, so they do not count.
# At GPT-2's V = 50257 with 5 prompts the table holds 2.5e9 parameters, 18.8 GiB in float64 for
# the parameters alone (Adam keeps two more copies), while the dense policy with d = 768
# (GPT-2's width: its output layer has exactly this shape) has 38.6 million.
def onehot_parameters(vocab_size, num_prompts):
    return vocab_size * (num_prompts + vocab_size + 2)


def dense_parameters(vocab_size, width):
    return vocab_size * (width + 1)


# %% exercise-2
# The batch estimate is the mean of B log-ratios. For independent draws its standard deviation
# is sigma / sqrt(B); B = 16 distinct examples out of thousands are nearly independent (the
# finite-population correction sqrt((N - B) / (N - 1)) is 0.998 here). So sigma / 4.
predicted_std_16 = float(np.std(mismatched)) / np.sqrt(16)
