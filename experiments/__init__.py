"""Reproductions of the experiments of Chen et al. (2018), "Neural Ordinary Differential Equations".

Subpackages, by what they reproduce:

:mod:`experiments.mnist`
    The TensorFlow/MNIST experiments: Table 1 (MLP, ResNet, RK-Net, ODE-Net), Figure 3 (NFE against
    error, time, depth and training), and the memory and backward-NFE studies behind them.
:mod:`experiments.systems`
    The paper's other systems, on odegrad's autograd door: continuous normalizing flows (§4), the
    latent ODE (§5) and neural ODEs fitted to trajectories.

Shared by both: :mod:`experiments.cli` (what ``python -m experiments.<sub>.<name>`` does before
the command starts: the check for the optional packages it needs and quiet TensorFlow logs),
:mod:`experiments.imports` (those needs, read from the commands' import statements) and
:mod:`odegrad.atomic` (atomic writes).  Results and their commands are in
``experiments/results/`` and the README.

Importing this package or any module in it runs no command, sets no environment variable and
touches no file; the commands do that in :func:`experiments.cli.run_command`.
"""
