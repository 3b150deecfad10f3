"""Worked solutions to the exercises of ``notebooks/01_loss_aversion.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``. Try the exercises before reading on.
"""

import numpy as np

# %% exercise-1
# A desirable example loses lambda_D * (1 - sigmoid(z)) with z = beta * (r - z0). A loss of
# 0.25 with lambda_D = 1 needs sigmoid(z) = 3/4, i.e. z = log(0.75 / 0.25) = log 3. So
# r = z0 + log(3) / beta = 8 + 5 log 3 = 13.49 nats.
r_quarter = 8.0 + float(np.log(3.0)) / 0.2

# %% exercise-2
# The gradient weight is sigmoid(z) sigmoid(-z) with z = beta * r; its largest value is 1/4, at
# z = 0. Half of it: with p = sigmoid(z), p (1 - p) = 1/8, so p = (1 + 1/sqrt(2)) / 2 and
# z = log(p / (1 - p)) = log(3 + 2 sqrt(2)) = 1.7627. With beta = 0.1: r = z / beta = 17.6 nats.
r_half_weight = float(np.log(3 + 2 * np.sqrt(2)) / 0.1)

# %% exercise-3
# Eq. 8: 1 <= lambda_D * n_D / (lambda_U * n_U) <= 4/3. With lambda_U = 1, n_D = 1300 and
# n_U = 5200 the upper end is lambda_D = (4/3) * 5200 / 1300 = 16/3 = 5.333 (the band is
# [4, 5.333]: weight the rare side up to balance, and at most a third more).
largest_desirable_weight = 4.0 / 3.0 * 5200 / 1300
