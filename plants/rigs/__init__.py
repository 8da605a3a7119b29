"""Rig description files of the lever plant (YAML, schema in ``plants.lever.rig``)."""
