"""Report layouts shipped with the bench (plugins of ``impbench.layouts``; see
:mod:`bench.layout`)."""
