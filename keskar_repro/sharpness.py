"""Metric 2.1 of Keskar et al. 2017 under its historical import path.

`import keskar_repro.sharpness` is what research code written against this package uses; the
implementation lives in `keskar_repro.measures` (the module `keskar_repro.measures.sharpness`),
and this module re-exports its public names unchanged.
"""

from keskar_repro.measures.sharpness import *  # noqa: F403
from keskar_repro.measures.sharpness import __all__  # noqa: F401
