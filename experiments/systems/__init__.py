"""The paper's other systems, on odegrad's autograd door (no TensorFlow).

Commands (``python -m experiments.systems.<name> --help`` for their options):

``cnf``
    Continuous normalizing flows (§4): Figures 4-6 (:mod:`~experiments.systems.cnf_models`,
    :mod:`~experiments.systems.cnf_training`, :mod:`~experiments.systems.cnf_figures`).
``latent_ode``
    The latent ODE on bi-directional spirals (§5): Table 2 and Figures 7-9
    (:mod:`~experiments.systems.latent_ode_data`, :mod:`~experiments.systems.latent_ode_plots`).
``learn_dynamics``
    Neural ODEs fitted to trajectories of known systems.

:mod:`~experiments.systems.common` holds what they share: flat parameter vectors, Adam, JSON
output and headless matplotlib.
"""
