"""``[store] replica``: the name a replica puts on its PostgreSQL leases.

Two ``serve`` processes on one host would share the host name and take each
other's leases for their own, so the name is a setting: the host name by
default, ``${POD_NAME}`` in Kubernetes (the Helm chart sets it), validated
at start-up like every other key. tests/test_replicas_e2e.py runs three
replicas with distinct names on one host.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from alertbridge.config import load_config
from alertbridge.errors import ConfigError

URL = 'url = "postgresql://u:secret-pw@db/ab"'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alertbridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_replica_defaults_to_the_host_name(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"[store]\n{URL}\n"), {})
    assert config.store.replica == socket.gethostname()


def test_the_replica_comes_from_the_pod_name(tmp_path: Path) -> None:
    path = write(tmp_path, f'[store]\n{URL}\nreplica = "${{POD_NAME}}"\n')
    config = load_config(path, {"POD_NAME": "alertbridge-7d9f8c6b5-x2x7q"})
    assert config.store.replica == "alertbridge-7d9f8c6b5-x2x7q"


def test_an_unset_pod_name_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, f'[store]\n{URL}\nreplica = "${{POD_NAME}}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert "store.replica" in str(info.value)
    assert "POD_NAME is not set" in str(info.value)


@pytest.mark.parametrize("value", ['""', '"two words"', '"-leading-dash"', f'"{"a" * 254}"', "3"])
def test_a_bad_replica_name_is_a_config_error_naming_file_and_key(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"[store]\n{URL}\nreplica = {value}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert "store.replica" in text
    assert "secret-pw" not in text
