"""Worked solutions to the exercises of ``notebooks/06_the_loss_family.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``. Try the exercises before reading on.
"""

import numpy as np

# %% exercise-1
# IPO's loss is (m - 1/(2 beta))^2 on the raw margin m = c - r: zero, its minimum, at
# m = 1 / (2 * 0.25) = 2 nats. (Unlike DPO, a larger margin costs again.)
ipo_target_margin = 1.0 / (2 * 0.25)

# %% exercise-2
# dv/dh = (1 - eps) sigma(-h) - eps sigma(h) = 0  <=>  sigma(h) / sigma(-h) = e^h = (1 - eps)/eps,
# so h = log(0.8 / 0.2) = log 4 = 1.386: the label's log-odds. Past it cDPO pulls the margin back.
cdpo_turning_margin = float(np.log(0.8 / 0.2))

# %% exercise-3
# At h = 1 exactly, 1 - h = 0 and relu's derivative is taken as 0 (the right-hand derivative,
# a subgradient in [-1, 0]): the pair contributes nothing, so dL/dc = 0.
hinge_kink_gradient = 0.0
