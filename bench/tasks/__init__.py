"""The bench's own task adapter (impedance estimation); see :mod:`bench.task`.

The calibration task adapter lives with the calibrators (``estimators.calibration.task``),
which own its data types; both are found through the ``impbench.tasks`` entry points.
"""
