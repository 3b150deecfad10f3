"""Worked solutions to the exercises of ``notebooks/04_bigger_toys_on_gpu.ipynb``.

Each block that starts with a ``# %% exercise-N`` line replaces the notebook's stub cell tagged
``exercise-N``; ``tests/test_notebooks.py`` runs the notebook that way and expects every check to
print ``correct``. Try the exercises before reading on.
"""


# %% exercise-1
# The exponent in T is 1, and so are the two slopes of Section 3. For a batch of B responses of
# T tokens (N = B*T token positions) and a dense policy of width d, one step touches:
#
#   hidden states h (fixed embeddings, gathered)         N x d    ~ N d
#   logits h @ W                                          N x V    ~ N d V multiply-adds
#   log-softmax, gather of the target log-probs           N x V    ~ N V
#   the mismatched pairs: policy and reference forward    twice the above
#   backward: d loss / d logits = g (onehot - p)          N x V    ~ N V
#   d W = h.T @ (d loss / d logits)                       d x V    ~ N d V
#
# Every term is proportional to V at fixed N, and B and T enter only through N = B*T: a step
# costs about N d V, so t ~ V**1, t ~ B**1 and t ~ T**1 once the sizes are large enough that
# the fixed cost of each call (Python, small allocations) stops counting. (The loss itself is
# O(B) and negligible.) Measured slopes land near 1: a little below while the smallest fitted
# size still carries that fixed cost, a little above when the arrays outgrow the CPU caches.
predicted_exponent_T = 1.0


# %% exercise-2
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
