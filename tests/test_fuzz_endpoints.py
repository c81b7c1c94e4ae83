"""Hostile input against the real endpoints: malformed, truncated, deeply
nested and wrongly typed bodies, invalid UTF-8, odd content types, forged
callbacks. Every answer is a clear 4xx (or 200 for what is valid), never a
5xx, and nothing is stored for a request that was not accepted."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from alertbridge.app import create_app
from alertbridge.config import parse_config
from alertbridge.testing.server import ServerThread
from tests.fuzz_inputs import FIRING, GRAFANA, Target, content_types, json_values, mutate

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

EXAMPLES = 2500  # per strategy below: 4 × 2500 webhook cases, plus the callback ones


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    workdir = tmp_path_factory.mktemp("fuzz")
    config = parse_config(
        {
            "server": {"max_body_bytes": 64 * 1024},
            "store": {"url": f"sqlite:///{workdir / 'fuzz.db'}"},
            # A callback-enabled app whose API base is unreachable: commands fail quietly.
            "wecom": {
                "api_base": "http://127.0.0.1:9",
                "apps": {
                    "ops": {
                        "corp_id": "wwfuzz",
                        "agent_id": 1,
                        "secret": "fuzz-secret",
                        "token": "fuzzToken",
                        "encoding_aes_key": AES_KEY,
                    }
                },
            },
            "receivers": {"sink": {"channel": "console"}},
        },
        {},
        "fuzz.toml",
    )
    with ServerThread(create_app(config, out=io.StringIO())) as server:
        target = Target(server.base_url, workdir / "fuzz.db")
        yield target
        target.http.close()


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)


@FUZZ
@given(body=st.binary(max_size=2048), content_type=content_types, grafana=st.booleans())
def test_random_bytes(target: Target, body: bytes, content_type: str, grafana: bool) -> None:
    target.check("/grafana/sink" if grafana else "/alertmanager/sink", body, content_type)


@FUZZ
@given(value=json_values, grafana=st.booleans())
def test_random_json(target: Target, value: Any, grafana: bool) -> None:
    target.check(
        "/grafana/sink" if grafana else "/alertmanager/sink", json.dumps(value).encode(), "application/json"
    )


@FUZZ
@given(
    path=st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=4),
    replacement=json_values,
    grafana=st.booleans(),
)
# Found by this test: a payload's own key ("\n") in the error's field path broke the one-line reason.
@example(path=[1], replacement={"\n": None}, grafana=False)
def test_valid_payloads_with_one_field_broken(
    target: Target, path: list[int], replacement: Any, grafana: bool
) -> None:
    payload = mutate(GRAFANA if grafana else FIRING, path, replacement)
    target.check(
        "/grafana/sink" if grafana else "/alertmanager/sink", json.dumps(payload).encode(), "application/json"
    )


@FUZZ
@given(
    cut=st.integers(min_value=0, max_value=4000),
    depth=st.integers(min_value=0, max_value=200_000),
    junk=st.binary(min_size=1, max_size=4),
    grafana=st.booleans(),
)
def test_truncated_nested_and_invalid_utf8(
    target: Target, cut: int, depth: int, junk: bytes, grafana: bool
) -> None:
    valid = json.dumps(GRAFANA if grafana else FIRING, ensure_ascii=False).encode()
    path = "/grafana/sink" if grafana else "/alertmanager/sink"
    target.check(path, valid[: cut % len(valid)], "application/json")
    target.check(path, b"[" * (depth % 60_000) + b"]" * (depth % 60_000), "application/json")
    position = cut % len(valid)
    target.check(path, valid[:position] + b"\xff" + junk + valid[position:], "application/json")


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(
    params=st.dictionaries(
        st.sampled_from(["msg_signature", "timestamp", "nonce", "echostr", "x"]),
        st.text(max_size=60),
        max_size=5,
    ),
    body=st.binary(max_size=1024)
    | st.builds(lambda s: f"<xml><Encrypt>{s}</Encrypt></xml>".encode(), st.text()),
    method=st.sampled_from(["GET", "POST"]),
)
def test_forged_callbacks_are_rejected_without_5xx(
    target: Target, params: dict[str, str], body: bytes, method: str
) -> None:
    response = target.http.request(method, "/wecom/callback/ops", params=params, content=body)
    assert response.status_code in (403, 413), (response.status_code, response.text)
