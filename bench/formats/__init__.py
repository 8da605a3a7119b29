"""Readers for users' own musculoskeletal data: OpenSim storage and models, CEINMS tables and
XML, NMSM Pipeline ``.osimx``, C3D analog."""

from bench.formats._table import FormatWarning
from bench.formats.c3d import read_c3d_analog
from bench.formats.ceinms import read_ceinms_table
from bench.formats.ceinms_xml import read_ceinms_subject, read_ceinms_trial, write_ceinms_subject
from bench.formats.opensim import Table, read_storage, write_storage
from bench.formats.osim import osim_kinematics, read_osim_muscles
from bench.formats.osimx import read_osimx

__all__ = ["FormatWarning", "Table", "osim_kinematics", "read_c3d_analog", "read_ceinms_subject",
           "read_ceinms_table", "read_ceinms_trial", "read_osim_muscles", "read_osimx",
           "read_storage", "write_ceinms_subject", "write_storage"]
