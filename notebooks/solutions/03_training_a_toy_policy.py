"""Worked solutions to the exercises of ``notebooks/03_training_a_toy_policy.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``. The blocks use only names the notebook has defined by then (``kl_estimate``,
``balanced_desirable_weight``...). Try the exercises before reading on.
"""

from minikto import balanced_desirable_weight, kl_estimate

# %% exercise-1
# Prediction: "zero". Matching the pairs does not change the SIGN of the estimate. The batch's
# responses were sampled from the reference, so on matched pairs the mean log-ratio estimates
#
#     E_{y ~ pi_ref(.|x)} [log pi(y|x) - log pi_ref(y|x)] = -KL(pi_ref(.|x) || pi(.|x)) <= 0,
#
# the REVERSE KL with a minus sign (Gibbs' inequality), not +KL(pi || pi_ref). After training
# it is strongly negative: 71% of the examples are undesirable and KTO has pushed them tens of
# nats below the reference, while the desirable ones moved by about a nat. The clamp returns 0
# in every batch, exactly as for the mismatched pairs. Only responses sampled from the policy
# itself estimate +KL(pi || pi_ref): averaging the log-ratio over
# ``result.policy.sample(data.prompts, task.max_length, seed=1)`` gives about +1.9 nats, next to
# the exact 1.84, and generating those samples is the cost the batch estimate avoids.
prediction_1 = "zero"


def matched_z0(policy, reference, prompts, responses):
    # One call of kl_estimate on the matched log-probs: max(0, mean of the log-ratios).
    estimate = kl_estimate(policy.sequence_logps(prompts, responses),
                           reference.sequence_logps(prompts, responses))
    return float(estimate.z0)


# %% exercise-2
# Eq. 8 asks for lambda_D * n_D / (lambda_U * n_U) in [1, 4/3]. With lambda_U = 1 that is
# lambda_D in [n_U / n_D, 4/3 * n_U / n_D] = [1426/158, 4/3 * 1426/158] = [9.03, 12.03] (for an
# exact 1 : 9 split it would be [9, 12]). Any value inside works; balanced_desirable_weight
# returns the lower end rounded UP to two decimals, so that rounding cannot leave the band.
desirable_count, undesirable_count = 158, 1426  # printed above the stub
lambda_D_1to9 = balanced_desirable_weight(desirable_count, undesirable_count)  # 9.03


# %% exercise-3
# Prediction: "up". A response that appears once as desirable and once as undesirable
# contributes, with z = beta * (r - z0) and 1 - sigmoid(-z) = sigmoid(z),
#
#     lambda_D * (1 - sigmoid(z)) + lambda_U * sigmoid(z)
#         = lambda_D - (lambda_D - lambda_U) * sigmoid(z).
#
# With lambda_D = lambda_U this is the constant lambda: Section 9's zero gradient. With
# lambda_D = 2 > lambda_U = 1 it is 2 - sigmoid(z), which DECREASES as r grows, so gradient
# descent raises the log-probability of every contradictory response until sigmoid(z)
# saturates. The heavier side of a contradiction wins; with lambda_U > lambda_D the responses
# would go down. At the reference (r = z0 = 0) the loss is (2 - 1/2) / 2 = 0.75 per example and
# kto_objective(..., desirable_weight=2.0).kto.grad_policy_logps, summed over the two copies of
# each response, is negative for every response.
prediction_3 = "up"
