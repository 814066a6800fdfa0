"""Cache profiles: exactly three, every knob with a default, custom files checked."""

import pytest

from artifacts_core.config import PROFILES, VolumeConfig, profile_config, xdg_dir
from artifacts_core.errors import ConfigError


def test_exactly_three_profiles_with_distinct_throughput_settings():
    assert PROFILES == ("interactive", "benchmark", "custom")
    inter, bench = profile_config(), profile_config("benchmark")
    assert inter.profile == "interactive" and inter.attr_ttl == pytest.approx(60.0)
    assert inter.disk_cache and inter.negative_ttl == 0
    assert bench.readahead_max > inter.readahead_max
    assert bench.upload_concurrency > inter.upload_concurrency


def test_custom_profile_from_toml_and_json(tmp_path):
    toml = tmp_path / "knobs.toml"
    toml.write_text("readahead_max = 8388608\nupload_concurrency = 4\n")
    cfg = profile_config("custom", custom_file=toml)
    assert cfg.readahead_max == 8 << 20 and cfg.upload_concurrency == 4
    assert cfg.attr_ttl == VolumeConfig().attr_ttl  # omitted knobs keep the interactive value
    js = tmp_path / "knobs.json"
    js.write_text('{"attr_ttl": 0.5}')
    assert profile_config("custom", custom_file=js).attr_ttl == 0.5


def test_bad_profiles_and_knobs_are_refused_by_name(tmp_path):
    with pytest.raises(ConfigError, match="unknown cache profile"):
        profile_config("turbo")
    with pytest.raises(ConfigError, match="needs a file"):
        profile_config("custom")
    bad = tmp_path / "bad.toml"
    bad.write_text("readahead_maximum = 1\n")
    with pytest.raises(ConfigError, match="readahead_maximum"):
        profile_config("custom", custom_file=bad)
    typed = tmp_path / "typed.toml"
    typed.write_text('upload_concurrency = "many"\n')
    with pytest.raises(ConfigError, match="upload_concurrency"):
        profile_config("custom", custom_file=typed)


def test_xdg_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert xdg_dir("cache") == tmp_path / "tonbo" / "artifacts"
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert str(xdg_dir("config")).endswith(".config/tonbo/artifacts")
