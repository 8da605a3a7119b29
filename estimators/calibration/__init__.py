"""Calibrators of EMG-driven musculoskeletal models (000, 001, 002).

Importing this package switches JAX to float64 (``jax_enable_x64``), as :mod:`plants.muscle`
does: calibration objectives differ in their third or fourth digit near an optimum, and the
optimizers' stopping rules (annealing's eps = 1e-3, AdamW's relative tol) need more than
float32 resolution.
"""

import jax

jax.config.update("jax_enable_x64", True)
