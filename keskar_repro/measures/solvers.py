"""The maximisers of Metric 2.1 (`SOLVERS`): SciPy's L-BFGS-B (with restarts), jaxopt's
L-BFGS-B on the device, projected sign-gradient ascent; `SolverOptions` configures them."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy
import scipy.linalg
import scipy.optimize

from keskar_repro.measures.checks import (
    check_choice,
)
from keskar_repro.measures.compiled import LBFGSB_MAXCOR, LBFGSB_MAXLS
from keskar_repro.measures.options import METHODS, SolverOptions
from keskar_repro.measures.problem import SharpnessProblem


def resolved_method(method: str = "auto", scaling: str = "normalized") -> str:
    """The solver `method` names: "auto" is "lbfgsb-device" on an accelerator (GPU/TPU) with
    the normalized scaling, where SciPy's host-side L-BFGS-B arithmetic would dominate, and
    "lbfgsb" (SciPy) on a CPU or for the literal scaling (which only SciPy's runs). The two
    agree within 0.3% on F1 minimizers (benchmarks/device_lbfgsb_mnist10k.json)."""
    check_choice("method", method, METHODS)
    if method != "auto":
        return method
    on_accelerator = jax.default_backend() != "cpu"
    return "lbfgsb-device" if on_accelerator and scaling == "normalized" else "lbfgsb"


_UNLIMITED = int(np.iinfo(np.int32).max)

# --------------------------------------------------------------------------------------------
# Solvers
# --------------------------------------------------------------------------------------------

# The task codes of SciPy's L-BFGS-B (scipy/optimize/_lbfgsb_py.py, SciPy >= 1.15).
_TASK_STATUS = {0: "START", 1: "NEW_X", 2: "RESTART", 3: "FG", 4: "CONVERGENCE", 5: "STOP",
                6: "WARNING", 7: "ERROR", 8: "ABNORMAL"}  # fmt: skip
_SETULB_SIGNATURE = (
    "setulb(m,x,l,u,nbd,f,g,factr,pgtol,wa,iwa,task,lsave,isave,dsave,maxls,ln_task)"
)


def _setulb() -> Callable | None:
    """SciPy's compiled L-BFGS-B step `setulb`, if it has the interface this module drives."""
    try:
        from scipy.optimize import _lbfgsb  # private: guarded by the signature check below
    except ImportError:
        return None
    doc = "".join((getattr(_lbfgsb.setulb, "__doc__", "") or "").split())  # without whitespace
    return _lbfgsb.setulb if doc.startswith(_SETULB_SIGNATURE) else None


def _task_message(task: np.ndarray) -> str:
    try:
        from scipy.optimize._lbfgsb_py import task_messages
    except ImportError:  # pragma: no cover - message text only
        task_messages = {}
    status = _TASK_STATUS.get(int(task[0]), str(int(task[0])))
    return f"{status}: {task_messages.get(int(task[1]), str(int(task[1])))}"


def _lbfgsb_setulb(
    fun_and_grad: Callable,
    lower: np.ndarray,
    upper: np.ndarray,
    maxiter: int,
    x0: np.ndarray | None = None,
    maxfun: int | None = None,
) -> tuple[np.ndarray, int, int, str]:
    """L-BFGS-B by SciPy's own compiled `setulb`, driven exactly as `minimize` drives it.

    The same reverse-communication loop as scipy.optimize._lbfgsb_py._minimize_lbfgsb (SciPy
    1.15-1.17), with ftol = gtol = 0, but with the bound types set in one vectorised step instead
    of SciPy's per-variable Python loop (seconds at n ~ 1.5 M). Same iterates, bit for bit.
    With `maxfun`, it stops right after the maxfun-th evaluation.
    """
    setulb = _setulb()
    if setulb is None:
        raise RuntimeError("this SciPy's L-BFGS-B has an unknown interface; use driver='public'")
    m, n = LBFGSB_MAXCOR, lower.shape[0]
    lower = np.ascontiguousarray(lower, dtype=np.float64)
    upper = np.ascontiguousarray(upper, dtype=np.float64)
    fin_l, fin_u = np.isfinite(lower), np.isfinite(upper)
    nbd = np.where(fin_l & fin_u, 2, np.where(fin_l, 1, np.where(fin_u, 3, 0))).astype(np.int32)
    low = np.where(fin_l, lower, 0.0)
    upp = np.where(fin_u, upper, 0.0)
    x = np.clip(np.zeros(n) if x0 is None else np.array(x0, dtype=np.float64), lower, upper)
    f = 0.0
    g = np.zeros(n, dtype=np.float64)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m, dtype=np.float64)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task = np.zeros(2, dtype=np.int32)
    ln_task = np.zeros(2, dtype=np.int32)
    lsave = np.zeros(4, dtype=np.int32)
    isave = np.zeros(44, dtype=np.int32)
    dsave = np.zeros(29, dtype=np.float64)
    nit = nfev = 0
    while True:
        setulb(m, x, low, upp, nbd, f, g, 0.0, 0.0, wa, iwa, task, lsave, isave, dsave,
               LBFGSB_MAXLS, ln_task)  # fmt: skip
        if task[0] == 3:  # FG: evaluate at x
            f, g = fun_and_grad(x)
            f = float(f)
            g = np.ascontiguousarray(g, dtype=np.float64)
            nfev += 1
            if maxfun is not None and nfev >= maxfun:
                return x, nit, nfev, f"STOP: {nfev} evaluations of f (maxfun)"
        elif task[0] == 1:  # NEW_X: an iteration is complete
            nit += 1
            if nit >= maxiter:
                task[0], task[1] = 5, 504
        else:
            break
    return x, nit, nfev, _task_message(task)


def _lbfgsb_public(
    fun_and_grad: Callable,
    lower: np.ndarray,
    upper: np.ndarray,
    maxiter: int,
    x0: np.ndarray | None = None,
    maxfun: int | None = None,
) -> tuple[np.ndarray, int, int, str]:
    """L-BFGS-B through the public `scipy.optimize.minimize` with `Bounds` of numpy arrays
    (`maxfun` by SciPy's rule: checked when an iteration ends)."""
    res = scipy.optimize.minimize(
        fun_and_grad,
        np.zeros(lower.shape[0]) if x0 is None else np.asarray(x0, dtype=np.float64),
        jac=True,
        method="L-BFGS-B",
        bounds=scipy.optimize.Bounds(lower, upper),
        options={
            "maxiter": maxiter,
            "maxfun": _UNLIMITED if maxfun is None else maxfun,
            "ftol": 0.0,
            "gtol": 0.0,
            "maxcor": LBFGSB_MAXCOR,
            "maxls": LBFGSB_MAXLS,
        },
    )
    return np.asarray(res.x), int(res.nit), int(res.nfev), str(res.message)


@dataclasses.dataclass(frozen=True, eq=False)
class SolverOutcome:
    """What one solver found on a `SharpnessProblem`, in the problem's solver variables z.

    z_best      the best evaluated point (None: none recorded); `sharpness` reports z = 0 instead
                when it is None or no better than x.
    f_max       f at z_best.
    f_final     f at the solver's last iterate (may be below f_max).
    nit, nfev   iterations and function evaluations as the solver counts them.
    message     the solver's own termination message (of its last run, after restarts).
    solver      the solver, its settings and the library versions.
    restarts    for each early stop that was restarted: "after iteration k: <message>".
    """

    z_best: np.ndarray | None
    f_max: float
    f_final: float
    nit: int
    nfev: int
    message: str
    solver: str
    restarts: tuple[str, ...] = ()


def _check_normalized(method: str, scaling: str) -> None:
    """Only SciPy's L-BFGS-B solves the literal problem; the others work in box coordinates."""
    if scaling == "literal" and method != "lbfgsb":
        raise ValueError(
            f"scaling='literal' is solved only by method='lbfgsb' (SciPy's L-BFGS-B), not by "
            f"method={method!r}, which works in box coordinates: pass method='lbfgsb' for the "
            f"paper's literal formulation, or scaling='normalized' with method={method!r}"
        )


def _lbfgsb_driver(driver: str) -> str:
    """`driver` with "auto" resolved; ValueError where "setulb" is asked of a SciPy without it."""
    if driver == "auto":
        return "public" if _setulb() is None else "setulb"
    if driver == "setulb" and _setulb() is None:
        raise ValueError(
            f"driver='setulb' needs SciPy 1.15-1.17's L-BFGS-B interface (have {scipy.__version__})"
        )
    return driver


_KKT_MESSAGE = "PROJECTED GRADIENT"  # "NORM OF PROJECTED GRADIENT <= PGTOL", with pgtol = 0


def _solve_lbfgsb(problem: SharpnessProblem, options: SolverOptions) -> SolverOutcome:
    """SciPy's L-BFGS-B on `problem.fun_and_grad` from z = 0, through `options.driver`, for
    exactly `maxiter` iterations in all.

    Only the iteration limit or an exact KKT point (projected gradient exactly 0) ends the
    search. When L-BFGS-B stops earlier for another reason -- no decrease of F at float
    resolution ("RELATIVE REDUCTION OF F"), a failed line search ("ABNORMAL") -- it is started
    again from the best point so far with a fresh memory (an identity Hessian, i.e. a projected
    gradient step first) for the iterations left; each restart is recorded. A restart that
    makes no iteration at all ends the search (nothing more can be done from that point).
    """
    maxiter, maxfun = options.maxiter, options.maxfun
    driver = _lbfgsb_driver(options.driver)
    run = _lbfgsb_setulb if driver == "setulb" else _lbfgsb_public
    nit = nfev = 0
    restarts: list[str] = []
    start = None
    while True:
        left = None if maxfun is None else maxfun - nfev
        _, k, evals, message = run(
            problem.fun_and_grad, problem.lower, problem.upper, maxiter - nit, start, left
        )
        nit, nfev = nit + k, nfev + evals
        spent = maxfun is not None and nfev >= maxfun
        if nit >= maxiter or spent or _KKT_MESSAGE in message or k == 0 or problem.best_z is None:
            break
        restarts.append(f"after iteration {nit}: {message}")
        start = problem.best_z
    solver = (
        "scipy.optimize._lbfgsb.setulb (L-BFGS-B, direct driver)"
        if driver == "setulb"
        else "scipy.optimize.minimize(method='L-BFGS-B', bounds=Bounds)"
    )
    solver += (
        f"; m={LBFGSB_MAXCOR}, maxls={LBFGSB_MAXLS}, ftol=gtol=0, restarts from the best point"
    )
    solver += "" if maxfun is None else f"; maxfun={maxfun}"
    solver += f"; SciPy {scipy.__version__}"
    return SolverOutcome(
        problem.best_z, problem.best_f, problem.last_f, nit, nfev, message, solver, tuple(restarts)
    )


def _on_device(problem: SharpnessProblem, loop: Callable, *args: Any, **kwargs: Any) -> tuple:
    """`loop(params, data, h, A, f0, *args, **kwargs)`, one compiled loop of a device solver, its
    outputs copied to the host; its time counts as time in loss evaluations."""
    t0 = time.perf_counter()
    f0 = jnp.asarray(problem.f0, dtype=problem.loss_dtype)
    args = (problem.params, problem.data, problem._h_dev, problem.A, f0, *args)
    out = jax.device_get(loop(*args, part=problem.part, **kwargs))
    problem.seconds_in_evals += time.perf_counter() - t0
    return out


def _solve_lbfgsb_device(problem: SharpnessProblem, options: SolverOptions) -> SolverOutcome:
    """jaxopt's L-BFGS-B (`_device_lbfgsb`) on the normalized problem, in one compiled loop on
    the device; f is then evaluated once more at its final iterate. Reads maxiter only."""
    maxiter = options.maxiter
    _check_normalized("lbfgsb-device", problem.scaling)
    u, _, nit, nfev = _on_device(
        problem,
        problem._compiled.device_lbfgsb,
        jnp.asarray(problem.objective_scale, dtype=problem.loss_dtype),
        maxiter=maxiter,
    )
    problem.loss_evals += int(nfev)
    f_final, _ = problem.evaluate(np.asarray(u, dtype=np.float64))  # the loss at u, exactly
    nit = int(nit)
    return SolverOutcome(
        z_best=problem.best_z,
        f_max=problem.best_f,
        f_final=f_final,
        nit=nit,
        nfev=int(nfev) + 1,
        message=f"jaxopt.LBFGSB: {nit} iterations on the device",
        solver=(
            f"jaxopt.LBFGSB (on the device); m={LBFGSB_MAXCOR}, maxls={LBFGSB_MAXLS}, tol=0; "
            f"jaxopt {_jaxopt_version()}, JAX {jax.__version__}"
        ),
    )


def _solve_pga(problem: SharpnessProblem, options: SolverOptions) -> SolverOutcome:
    """`maxiter` steps of projected sign-gradient ascent (`_pga_loop`, step `options.pga_step`)
    on the normalized problem, in one compiled loop on the device; keeps the best point."""
    maxiter = options.maxiter
    _check_normalized("pga", problem.scaling)
    step = options.pga_step
    best_u, best_v, best_i, v_last = _on_device(
        problem,
        problem._compiled.pga,
        jnp.asarray(problem.grad0.astype(problem.dtype)),
        jnp.asarray(maxiter, dtype=jnp.int32),
        jnp.asarray(step, dtype=problem.dtype),
    )
    problem.loss_evals += maxiter
    return SolverOutcome(
        z_best=np.asarray(best_u, dtype=np.float64),
        f_max=float(best_v),
        f_final=float(v_last),
        nit=maxiter,
        nfev=maxiter + 1,
        message=f"PGA: completed {maxiter} steps; best point at step {int(best_i)}",
        solver=f"projected sign-gradient ascent, step {step:g} half-widths; JAX {jax.__version__}",
    )


def _jaxopt_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("jaxopt")
    except metadata.PackageNotFoundError:
        return "unknown"


# The maximisers of Metric 2.1, by `method` name: solver(problem, options). Each starts
# at z = 0 (evaluated when the problem was built) and leaves problem's counters up to date.
SOLVERS: dict[str, Callable[[SharpnessProblem, SolverOptions], SolverOutcome]] = {
    "lbfgsb": _solve_lbfgsb,
    "lbfgsb-device": _solve_lbfgsb_device,
    "pga": _solve_pga,
}
