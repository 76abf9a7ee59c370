"""Appendix D of Chen et al. (2018), "Neural Ordinary Differential Equations".

The paper's reference autograd implementation of the adjoint sensitivity
method, kept verbatim in :mod:`appendix_d.integrate` so that ``odegrad`` can be
compared against it (see ``tests/test_appendix_d.py``).
"""

from appendix_d.integrate import grad_odeint_all, odeint

__all__ = ["odeint", "grad_odeint_all"]
