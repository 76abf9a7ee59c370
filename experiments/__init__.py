"""Experiments of Chen et al. (2018).

The MNIST experiments (Table 1 and Figure 3) are these modules:

mnist
    Reading (and, on request only, downloading) the four MNIST IDX files.
models
    Keras models: MLP, ResNet, RK-Net and ODE-Net, as in torchdiffeq's ``odenet_mnist.py``.
training
    The training loop with per-epoch checkpoints and exact resume.
table1
    Entry point that trains the models and writes ``table1.md``.
memory
    Peak memory and wall time of one training step as depth grows.
figure3
    The four NFE panels of Figure 3 from a trained ODE-Net run.
smoke
    A few-minute end-to-end run of all of the above on a slice of MNIST.

Shared by all of them: ``cli`` (what ``python -m experiments.X`` does before TensorFlow starts:
the check for the optional packages and quiet TensorFlow logs) and ``atomic`` (atomic writes).
"""

from experiments.cli import prepare_command_line

prepare_command_line()
