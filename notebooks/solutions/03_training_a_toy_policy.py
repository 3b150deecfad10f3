"""Worked solutions to the exercises of ``notebooks/03_training_a_toy_policy.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``. The blocks use the names the notebook defines (``data``, ``exercise_config``,
``result``, ``reference``, ``batch_indices``, ``np``). Try the exercises before reading on.
"""

# %% exercise-1
# At step 1 the policy is the reference: every log-ratio r is 0 and z0 = max(0, 0) = 0, so
# z = 0 and each example loses lambda_y * (1 - sigmoid(0)) = lambda_y / 2. The logged loss is
# the mean over the FIRST BATCH: (lambda_D n_D + lambda_U n_U) / (2 B), with n_D, n_U counted
# in that batch and B its real size: 2000 examples split into 42 nearly equal batches of 47 or
# 48 rows, not always batch_size (the dataset's shares give a different number).
first = batch_indices(len(data), exercise_config.batch_size, exercise_config.seed, 0)
n_D = int(np.sum(data.desirable[first]))
n_U = len(first) - n_D
first_loss = (exercise_config.desirable_weight * n_D + exercise_config.undesirable_weight * n_U) / (
    2 * len(first)
)

# %% exercise-2
# The matched pairs (x_i, y_i) with y_i drawn from pi_ref(.|x_i): their mean log-ratio
# estimates E_{y ~ pi_ref}[log pi / pi_ref] = -KL(pi_ref || pi) <= 0. It is strongly negative
# here: training pushed the many undesirable reference samples far down.
ratios = result.policy.sequence_logps(data.prompts, data.responses) - reference.sequence_logps(
    data.prompts, data.responses
)
matched_mean = float(np.mean(ratios))
