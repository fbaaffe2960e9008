"""CheckpointConfig: defaults, builders and validation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from crema.config import CheckpointConfig
from crema.errors import ConfigError


def test_defaults_match_the_guide() -> None:
    config = CheckpointConfig("./checkpoints")
    assert config.directory == Path("checkpoints")
    assert config.log_threshold == 10_000
    assert config.time_interval is None
    assert config.compression is True
    assert config.max_snapshots == 5
    assert config.auto_recover is True


def test_builders_return_new_configs() -> None:
    base = CheckpointConfig("/tmp/c")
    built = (
        base.with_log_threshold(50)
        .with_time_interval(3600)
        .with_compression(False)
        .with_max_snapshots(3)
        .with_auto_recover(False)
    )
    assert base.log_threshold == 10_000
    assert built.log_threshold == 50
    assert built.time_interval == timedelta(hours=1)
    assert built.compression is False
    assert built.max_snapshots == 3
    assert built.auto_recover is False
    assert built.with_time_interval(None).time_interval is None
    assert built.with_time_interval(timedelta(minutes=15)).time_interval == timedelta(minutes=15)
    assert CheckpointConfig("/x", time_interval=0.5).time_interval == timedelta(milliseconds=500)


def test_config_is_frozen() -> None:
    config = CheckpointConfig("/tmp/c")
    with pytest.raises(AttributeError):
        config.log_threshold = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"log_threshold": 0}, "log_threshold"),
        ({"log_threshold": True}, "log_threshold"),
        ({"max_snapshots": 0}, "max_snapshots"),
        ({"max_snapshots": 2.5}, "max_snapshots"),
        ({"time_interval": 0}, "time_interval"),
        ({"time_interval": -1.0}, "time_interval"),
        ({"time_interval": timedelta(seconds=-5)}, "time_interval"),
        ({"time_interval": float("nan")}, "time_interval"),
        ({"time_interval": "1h"}, "time_interval"),
        ({"compression": 1}, "compression"),
        ({"auto_recover": None}, "auto_recover"),
    ],
)
def test_invalid_values_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        CheckpointConfig("/tmp/c", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_directory_is_rejected() -> None:
    with pytest.raises(ConfigError, match="directory"):
        CheckpointConfig("")
