"""Blocking of the ``loops`` kernels of the OpenMP target: tiles, scratch layouts, tap tables,
as typed plan records (``records``) that the templates under ``templates/openmp`` print.

One module per family of decisions:

* ``tiles``: the register tiles and the cost models that pick them;
* ``sweeps``: forward and the input scratch; ``gather``: grad_input, split by stride phase;
  ``columns`` and ``lanes``: the column tiles and the channels-in-lanes tiles they use;
* ``grad_weight``: grad_weight's tiles; ``pointwise``: 1x1 layers as matrix products;
* ``shuffles``: the register shuffles, simulated (transpose, shifted loads, row schedule);
* ``layer``: ``plan``, which puts them together.

Why the tuning constants have their values, with the measurements behind them, is in
``docs/tiles.md``.
"""

from __future__ import annotations

from .common import (
    AVX2,
    AVX512,
    LANE_MIN_SUMS,
    SSE,
    VECTOR_BYTES,
    Geometry,
    Machine,
    geometry,
    host_machine,
    is_pointwise,
)
from .layer import candidates, channels_in_lanes, plan, unrolled
from .records import ModulePlan

__all__ = ["AVX2", "AVX512", "LANE_MIN_SUMS", "SSE", "VECTOR_BYTES",
           "Geometry", "Machine", "ModulePlan", "candidates", "channels_in_lanes", "geometry",
           "host_machine", "is_pointwise", "plan", "unrolled"]
