"""Readers for users' own musculoskeletal data: OpenSim storage, CEINMS trials, C3D analog."""

from bench.formats.c3d import read_c3d_analog
from bench.formats.ceinms import read_ceinms_table
from bench.formats.opensim import Table, read_storage, write_storage

__all__ = ["Table", "read_c3d_analog", "read_ceinms_table", "read_storage", "write_storage"]
