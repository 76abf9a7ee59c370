"""The TensorFlow/MNIST experiments of Chen et al. (2018): Table 1, Figure 3, memory and backward NFE.

Commands (``python -m experiments.mnist.<name> --help`` for their options):

``table1``
    Trains the four models (:mod:`~experiments.mnist.training`, :mod:`~experiments.mnist.models`)
    and writes ``table1.md``.
``figure3``
    The four NFE panels of Figure 3 from a trained ODE-Net run.
``memory``
    Peak memory and wall time of one training step as depth grows.
``backward_nfe``
    Backward against forward NFE of the trained ODE block under several adjoint settings.
``smoke``
    An end-to-end run of Table 1 and Figure 3 on a slice of MNIST: the pipeline check.
``data``
    Reading (and, on request only, downloading) the four MNIST IDX files.
``parameters``
    The models' parameter counts beside the paper's and torchdiffeq's.

Library modules: :mod:`~experiments.mnist.protocol` (training budgets, model names: no
TensorFlow), :mod:`~experiments.mnist.models`, :mod:`~experiments.mnist.runge_kutta` (the RK-Net's
solvers) and :mod:`~experiments.mnist.training`.
"""
