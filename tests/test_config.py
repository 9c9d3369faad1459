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


# Every value a careless or hostile config can hold gives one line naming the key: none is accepted
# unchecked, none reaches the model as a traceback.
@pytest.mark.parametrize("yaml_text, named", [
    ("training:\n  lora_targets: []\n", "training.lora_targets"),
    ("training:\n  lora_targets: [attn.nosuch]\n", "training.lora_targets"),
    ("decoding:\n  beam_size: 0\n", "decoding.beam_size"),
    ("decoding:\n  beam_size: -2\n", "decoding.beam_size"),
    ("training:\n  canary_size: -1\n", "training.canary_size"),
    ("training:\n  replay_per_step: -3\n", "training.replay_per_step"),
    ("training:\n  learning_rate: .nan\n", "training.learning_rate"),
    ("training:\n  learning_rate: .inf\n", "training.learning_rate"),
    ("training:\n  learning_rate: 1.0e+9\n", "training.learning_rate"),
    ("training:\n  canary_tolerance: .nan\n", "training.canary_tolerance"),
    ("training:\n  min_similarity: 5\n", "training.min_similarity"),
    ("training:\n  lora_rank: 100000\n", "training.lora_rank"),
    ("decoding:\n  glossary_max_terms: -1\n", "decoding.glossary_max_terms"),
    ("decoding:\n  term_min_logprob: 0.5\n", "decoding.term_min_logprob"),
    ("decoding:\n  max_audio_seconds: 0\n", "decoding.max_audio_seconds"),
    ("- training\n- decoding\n", "config must be a mapping"),
    ("training: 3\n", "training. must be a mapping"),
])  # fmt: skip
def test_out_of_range_values_are_one_line(tmp_path, yaml_text, named):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    assert named in one_line_error(path)


def test_every_numeric_setting_has_a_range_that_holds_its_default():
    numeric = [(section, f) for section in (TrainingConfig(), DecodingConfig())
               for f in dataclasses.fields(section) if f.type in ("int", "float", "int | None")]  # fmt: skip
    assert len(numeric) >= 25
    for section, f in numeric:
        low, high, above = f.metadata["range"]
        default = getattr(section, f.name)
        assert default is None or (low < default if above else low <= default) and default <= high, f.name


def test_numbers_in_exponent_form_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rate: 1e-5\n  head_learning_rate: 2E-3\n")
    config = load_config(path)
    assert config.training.learning_rate == 1e-5 and config.training.head_learning_rate == 2e-3


def test_yaml_alias_bomb_and_huge_files_are_refused_at_once(tmp_path):
    import time

    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for previous, name in zip("abcdefghijkl", "bcdefghijklm"):
        bomb += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb + "training:\n  lora_targets: *m\n")
    started = time.perf_counter()
    assert "YAML aliases" in one_line_error(path)
    assert time.perf_counter() - started < 2
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * 2_000_000 + "\n")
    assert "over the limit" in one_line_error(huge)


def test_a_language_whisper_does_not_know_is_one_line():
    from ffasr_cli import ASRAgent

    with pytest.raises(ConfigError, match="decoding.language 'klingon' is not a language Whisper knows"):
        ASRAgent(config={"decoding": {"language": "klingon"}})
