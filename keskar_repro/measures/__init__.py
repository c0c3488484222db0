"""Measurements of any differentiable `loss_fn(params) -> scalar` over any pytree: Metric 2.1
(`sharpness`), the other sharpness notions (`notions`) and the Hessian (`curvature`).

Nothing here imports the package's data, training, store or report code, so research code can
use it on any model.
"""
