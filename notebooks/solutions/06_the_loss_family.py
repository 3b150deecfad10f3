"""Worked solutions to the exercises of ``notebooks/06_the_loss_family.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``, and ``tests/test_exercises.py`` runs each grader of ``minikto.exercises`` on
these answers. Symbols as in notebook 01's notation box: ``Delta = r_w - r_l`` is a pair's
margin of log-ratios, ``q`` TRL's ``label_smoothing``. Try the exercises before reading on.
"""

import numpy as np

# %% exercise-1
# IPO's per-pair loss is (Delta - 1/(2 beta))^2 on the margin Delta itself (not beta Delta): its
# derivative 2 (Delta - 1/(2 beta)) is zero, the minimum, at Delta = 1 / (2 * 0.25) = 2 nats.
# (Unlike DPO, a larger margin costs again.)
ipo_target_margin = 1.0 / (2 * 0.25)

# %% exercise-2
# With h = beta Delta: v'(h) = (1 - q) sigma(-h) - q sigma(h) = 0  <=>  sigma(h) / sigma(-h) =
# e^h = (1 - q) / q, so h = log(0.8 / 0.2) = log 4 = 1.386: the label's log-odds. Past it cDPO
# pulls the margin back.
cdpo_turning_margin = float(np.log(0.8 / 0.2))

# %% exercise-3
# At beta Delta = 0.5 * 2 = 1 exactly, 1 - beta Delta = 0 and relu's derivative at 0 is taken as 0
# (as torch.relu's backward does; any value in the subgradient [-1, 0] would be defensible): the
# pair contributes nothing, so dL/d log pi(y_w|x) = 0.
hinge_kink_gradient = 0.0
