"""Test-session settings: CLI tests must not write JAX's persistent compilation cache into the
user's home (:mod:`bench.jaxcache`)."""

import os

os.environ.setdefault("IMPBENCH_JAX_CACHE", "off")
