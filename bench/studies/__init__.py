"""End-to-end studies that reproduce a paper's experiment on simulated data with known truth.

* :mod:`bench.studies.ankle` - seed 000's torque + stiffness calibration study (000 Sec.
  2.5-2.6, Table 1, Fig. 3-6) on synthetic ankle subjects;
* :mod:`bench.studies.ankle_config` - its YAML schema;
* :mod:`bench.studies.ankle_report` - its Markdown/HTML report;
* :mod:`bench.studies.cli` - the ``impbench study ankle`` command.

A study is an application of the bench: unlike :mod:`bench` core modules it imports the
plants and calibrators it runs directly.
"""
