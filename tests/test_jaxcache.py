"""bench.jaxcache: where the persistent compilation cache goes and how it is turned off."""

from __future__ import annotations

from pathlib import Path

import jax

from bench import jaxcache


def test_cache_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(jaxcache.ENV, str(tmp_path / "c"))
    assert jaxcache.cache_dir() == tmp_path / "c"
    for off in ("off", "0", "", "None"):
        monkeypatch.setenv(jaxcache.ENV, off)
        assert jaxcache.cache_dir() is None
        assert jaxcache.enable_compilation_cache() is None
    monkeypatch.delenv(jaxcache.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jaxcache.cache_dir() == Path(tmp_path) / "impbench" / "jax"


def test_enable_sets_jax_config_once(monkeypatch, tmp_path):
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv(jaxcache.ENV, str(tmp_path))
    old = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", None)
        assert jaxcache.enable_compilation_cache() == tmp_path
        assert jax.config.jax_compilation_cache_dir == str(tmp_path)
        assert jaxcache.enable_compilation_cache() is None  # already set: left alone
    finally:
        jax.config.update("jax_compilation_cache_dir", old)
