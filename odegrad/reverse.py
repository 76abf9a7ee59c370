"""One autograd trace, many vector-Jacobian products, all differentiable again.

Where the derived dynamics are themselves differentiated (Hessians, grad-of-grad), every
evaluation of the backward (adjoint) dynamics is one VJP of ``f`` and every evaluation of the
forward sensitivity dynamics is ``n`` of them, all at the same point, on traced values.
:func:`trace_vjp` traces ``fun`` once, as :func:`autograd.make_vjp` does, and sorts the graph
once; each VJP then only runs the nodes' own VJPs. The VJPs are autograd operations, so all of
this is differentiated again for higher derivatives, exactly as ``make_vjp`` is. On plain arrays
the derived dynamics use :mod:`odegrad.jacobian` instead (one vectorised pass for all rows).
"""

from __future__ import annotations

from typing import Any, Callable

from autograd.core import VJPNode, add_outgrads, vspace
from autograd.tracer import isbox, new_box, toposort, trace_stack


def trace(start_node: Any, fun: Callable[[Any], Any], x: Any) -> tuple[Any, Any]:
    """autograd's ``tracer.trace`` without its "Output seems independent of input" warning.

    Dynamics may ignore what is traced (``f`` that depends on ``t`` alone, a sensitivity column
    of a parameter that ``f`` does not read): a derivative of zero is then the right answer, and
    the warning would reach users of every odeint call with such dynamics.
    """
    with trace_stack.new_trace() as t:
        start_box = new_box(x, t, start_node)
        end_box = fun(start_box)
        if isbox(end_box) and end_box._trace == start_box._trace:
            return end_box._value, end_box._node
        return end_box, None


def trace_vjp(fun: Callable[[Any], Any], x: Any) -> tuple[Callable[[Any], Any], Any]:
    """``(vjp, fun(x))`` like :func:`autograd.make_vjp`, with the graph sorted once for all VJPs.

    Parameters
    ----------
    fun : callable
        A function of one array, written with ``autograd.numpy``.
    x : array
        Where to linearise (may itself be traced by an outer derivative).

    Returns
    -------
    vjp : callable
        ``vjp(g) -> g · ∂fun/∂x`` for a cotangent ``g`` of ``fun(x)``'s shape; call it as often
        as needed.
    value : array
        ``fun(x)``.
    """
    start = VJPNode.new_root()
    value, end = trace(start, fun, x)
    if end is None:
        return (lambda g: vspace(x).zeros()), value
    order = list(toposort(end))

    def vjp(g: Any) -> Any:
        outgrads = {end: (g, False)}
        outgrad = (g, False)
        for node in order:
            outgrad = outgrads.pop(node)
            for parent, ingrad in zip(node.parents, node.vjp(outgrad[0])):
                outgrads[parent] = add_outgrads(outgrads.get(parent), ingrad)
        return outgrad[0]

    return vjp, value
