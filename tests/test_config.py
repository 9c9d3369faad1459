"""The one config: shipped defaults, strict YAML, flat overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ffasr_cli.config import Config, DecodingConfig, TrainingConfig, load_config, to_yaml_dict
from ffasr_cli.errors import ConfigError

REPO_CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"


def one_line_error(source=None, **overrides) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(source, **overrides)
    message = str(error.value)
    assert message and "\n" not in message
    return message


def test_defaults():
    config = load_config()
    assert config == Config()
    assert config.model == "tiny.en" and config.device is None
    t = config.training
    assert (t.mode, t.accumulation_steps, t.learning_rate, t.cache_dtype) == ("encoder", 4, 6e-4, "float16")
    assert t.max_cache_size >= t.accumulation_steps
    assert config.decoding.beam_size is None and config.decoding.language == "en"


@pytest.mark.skipif(not REPO_CONFIG.exists(), reason="no top-level config.yaml in this checkout")
def test_repository_config_yaml_is_exactly_the_defaults():
    assert load_config(REPO_CONFIG) == Config()


def test_yaml_round_trip(tmp_path):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(to_yaml_dict(Config())))
    assert load_config(path) == Config()


def test_yaml_file_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: base.en\ntraining:\n  learning_rate: 1\n  mode: logits\ndecoding:\n  beam_size: 5\n")
    config = load_config(path)
    assert config.model == "base.en"
    assert config.training.learning_rate == 1.0 and isinstance(config.training.learning_rate, float)
    assert config.training.mode == "logits" and config.decoding.beam_size == 5
    assert config.training.accumulation_steps == TrainingConfig().accumulation_steps  # the rest stays


def test_empty_yaml_is_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("")
    assert load_config(path) == Config()


def test_unknown_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rat: 0.001\n")
    message = one_line_error(path)
    assert "training.learning_rat" in message and "learning_rate" in message
    assert "unknown config key colour" in one_line_error({"colour": "red"})


def test_bad_value_type(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rate: fast\n")
    message = one_line_error(path)
    assert "training.learning_rate" in message and "number" in message and "fast" in message
    assert "integer" in one_line_error({"training": {"accumulation_steps": 2.5}})
    assert "integer" in one_line_error({"training": {"accumulation_steps": True}})
    assert "true or false" in one_line_error({"training": {"freeze_encoder": "yes"}})
    assert "list of names" in one_line_error({"training": {"lora_targets": "attn.query"}})
    assert "mapping" in one_line_error({"training": 3})


def test_bad_values_rejected():
    assert "training.mode" in one_line_error(mode="fast")
    assert "learning_rate" in one_line_error(learning_rate=-1.0)
    assert "inner_steps" in one_line_error(inner_steps=0)
    assert "max_cache_size" in one_line_error(accumulation_steps=8, max_cache_size=4)
    assert "cache_dtype" in one_line_error(cache_dtype="bfloat16")
    assert "device" in one_line_error(device="tpu")
    assert "unknown option" in one_line_error(speed=3)


def test_unreadable_and_invalid_yaml(tmp_path):
    assert "cannot read config" in one_line_error(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    assert "not valid YAML" in one_line_error(bad)


def test_flat_overrides_find_their_section():
    config = load_config(
        model="base.en", device="cpu", learning_rate=1e-4, accumulation_steps=2, mode="full", beam_size=3, silence_dbfs=-60.0
    )
    assert config.model == "base.en" and config.device == "cpu"
    assert config.training.learning_rate == 1e-4 and config.training.accumulation_steps == 2
    assert config.training.mode == "full"
    assert config.decoding.beam_size == 3 and config.decoding.silence_dbfs == -60.0
    assert load_config(learning_rate=None) == Config()  # None means unset
    assert load_config(device="cuda:1").device == "cuda:1"


def test_overrides_win_over_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rate: 0.01\n  inner_steps: 5\n")
    config = load_config(path, learning_rate=0.002)
    assert config.training.learning_rate == 0.002 and config.training.inner_steps == 5


def test_config_instance_and_dict_sources():
    base = load_config(mode="logits")
    assert load_config(base) == base
    assert load_config(base, accumulation_steps=8).training.accumulation_steps == 8
    assert load_config({"decoding": {"glossary": False}}).decoding == dataclasses.replace(DecodingConfig(), glossary=False)
