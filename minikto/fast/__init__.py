"""Optional reading: the CPU-tuned form of the policy's training step.

The math lives in :mod:`minikto.policy` and :mod:`minikto.backend`, and that is what a reader
checks. This sub-package computes the same numbers with fewer passes over memory when a
batch's (positions x V) work is large:

- :mod:`minikto.fast.kernels`: an in-place softmax at the targets, ``w (onehot(y) - p)``
  without a one-hot matrix, a scatter-add in place, BLAS row and column sums, a matrix
  product into a buffer;
- :mod:`minikto.fast.blocks`: the policy's forward and backward pass, block of positions by
  block, and the one test (:func:`~minikto.fast.blocks.pays_off`) that chooses it;
- :mod:`minikto.fast.checks`: quick answers to the input checks' questions (the kind of a
  dtype, the range of integer ids) for NumPy arrays.
"""
