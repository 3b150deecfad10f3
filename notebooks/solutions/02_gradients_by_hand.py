"""Worked solutions to the exercises of ``notebooks/02_gradients_by_hand.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``; ``tests/test_exercises.py`` hands each block to its grader in
``minikto/exercises.py``. The blocks use only names the notebook's setup cell imports (``np``
and minikto's ``sigmoid``), and exercise 5 the functions of exercises 3 and 4. Try the
exercises before reading on.
"""

import numpy as np

from minikto.backend import sigmoid


# %% exercise-1
def bias_gradient(policy, prompt, response):
    # log pi(y|x) = sum_t log softmax(l_t)[y_t] with l_t = f(x, y_{t-1}) + b. Step 1 gives
    # d log softmax(l_t)[y_t] / d l_t = onehot(y_t) - p_t, and d l_t / d b is the identity at
    # EVERY position, so the bias collects the sum over the response's real tokens.
    tokens = response[response >= 0]  # y_1 .. y_L, the -1 padding dropped
    states = np.concatenate([[policy.bos_state], tokens[:-1]])  # y_0 = BOS, then y_1 .. y_{L-1}
    probs = policy.next_token_probs(np.full(len(tokens), prompt), states)  # p_t, shape (L, V)
    onehot = np.eye(policy.vocab_size)[tokens]  # onehot(y_t), shape (L, V)
    return np.sum(onehot - probs, axis=0)


# %% exercise-2
def dpo_gradients(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta):
    # l_i = -log sigmoid(h_i) with h_i = beta * ((c_i - rc_i) - (j_i - rj_i)), L = mean_i l_i.
    # d(-log sigmoid(h)) / dh = -sigmoid(-h); dh / dc = +beta, dh / dj = -beta; the mean adds 1/B.
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    weight = beta * sigmoid(-margin) / len(policy_chosen)
    return -weight, weight  # the chosen log-prob is pushed up, the rejected one down


# %% exercise-3
def my_kto_loss(
    policy_logps,
    reference_logps,
    desirable,
    z0,
    beta=0.1,
    desirable_weight=1.0,
    undesirable_weight=1.0,
):
    # Step 3: z_i = s_i beta (r_i - z0) with s_i = +1 (desirable) or -1, r_i the log-ratio;
    # l_i = lambda_i (1 - sigmoid(z_i)) = lambda_i sigmoid(-z_i); L = mean_i l_i.
    # dl_i/dz_i = -lambda_i sigmoid(z_i) sigmoid(-z_i), dz_i/d logp_i = s_i beta, and 1/B.
    sign = np.where(desirable, 1.0, -1.0)
    weight = np.where(desirable, desirable_weight, undesirable_weight)
    z = sign * beta * (policy_logps - reference_logps - z0)
    loss = float(np.mean(weight * sigmoid(-z)))
    grad = -weight * sign * beta * sigmoid(z) * sigmoid(-z) / len(z)
    return loss, grad


# %% exercise-4
def my_sequence_logps_backward(policy, prompts, responses, grad_logps):
    # Step 2, one response at a time. At position t the logits are
    # o_t = prompt[x] + prev[y_{t-1}] + b (y_0 = the begin state), and Step 1 gives
    # d log pi / d o_t = onehot(y_t) - p_t on real tokens. Weighted by g_i, each row goes back
    # to the rows it was gathered from: prompt[x_i], prev[y_{t-1}], and the bias (every t).
    grads = {name: np.zeros_like(value) for name, value in policy.params.items()}
    for x, row, g in zip(prompts, responses, grad_logps, strict=True):
        tokens = row[row >= 0]  # y_1 .. y_L, the -1 padding dropped
        states = np.concatenate([[policy.bos_state], tokens[:-1]])  # y_0 .. y_{L-1}
        probs = policy.next_token_probs(np.full(len(tokens), x), states)  # p_t, (L, V)
        grad_logits = g * (np.eye(policy.vocab_size)[tokens] - probs)  # (L, V)
        grads["prompt"][x] += grad_logits.sum(axis=0)
        np.add.at(grads["prev"], states, grad_logits)  # a state may repeat: scatter-ADD
        grads["bias"] += grad_logits.sum(axis=0)
    return grads


# %% exercise-5
def kto_step(policy, reference, prompts, responses, desirable, z0, learning_rate, beta=0.1):
    # The forward pass (minikto's sequence_logps), your loss and its gradient (exercise 3),
    # your backward pass (exercise 4), then one step of gradient descent, in place.
    logps = policy.sequence_logps(prompts, responses)
    reference_logps = reference.sequence_logps(prompts, responses)
    _, grad_logps = my_kto_loss(logps, reference_logps, desirable, z0, beta=beta)
    grads = my_sequence_logps_backward(policy, prompts, responses, grad_logps)
    for name in policy.params:
        policy.params[name] -= learning_rate * grads[name]
