"""Benchmarks of odegrad against its peers: ``python -m benchmarks.peers --help``.

``benchmarks.cases`` turns problems of :mod:`odegrad.gradcheck.problems` (written once, generically
over an array namespace: ``autograd.numpy``, ``numpy``, ``torch``, ``jax.numpy``) into benchmark cases
with a loss, tolerances and the implementations to time; ``benchmarks.peers`` times every
implementation on them and prints a Markdown table; ``benchmarks.profile`` profiles where
odegrad's gradient time goes. The peers (torch, torchdiffeq, jax) are optional and never test
dependencies: a peer that is not installed is skipped with a note.
"""
