"""Worked solutions to the exercises of ``notebooks/04_variations.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``. Try the exercises before reading on.
"""

import numpy as np

# %% exercise-1
# DPO's optimum log-odds is log pi_ref(y_a)/pi_ref(y_b) + log(p / (1 - p)) / beta; it prefers
# the minority's y_b where that is negative. The boundary: reference log-odds
# = -log(p / (1 - p)) / beta = -2 log(7/3) = -1.695 nats at beta = 0.5, p = 0.7.
threshold_log_odds = -float(np.log(0.7 / 0.3)) / 0.5

# %% exercise-2
# At r = z0 = 0, z = 0 and sigmoid(z) sigmoid(-z) = 1/4. The desirable copy contributes
# -lambda_D beta / 4, the undesirable one +lambda_U beta / 4, and the batch mean divides by 2:
# (-2 + 1) * 0.1 / 4 / 2 = -0.0125. Negative: gradient descent RAISES the response's
# log-probability, so with lambda_D > lambda_U contradictory responses go up.
contradiction_gradient = (-2.0 + 1.0) * 0.1 * 0.25 / 2
