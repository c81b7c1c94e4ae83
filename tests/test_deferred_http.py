"""alertbridge's HTTP clients build their pools (and TLS contexts, with the CA
bundle) on their first request, and are otherwise httpx's: proxies from the
environment, closing, requests."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from alertbridge.app import new_http_client
from alertbridge.config import ImagesConfig
from alertbridge.images import new_image_http_client
from tests.config_builder import build_config
from tests.image_server import ImageServer, make_png


@pytest.fixture
def ca_loads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every CA bundle an SSL context loads from now on."""
    loads: list[object] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(context: ssl.SSLContext, *args: object, **kwargs: object) -> None:
        loads.append(args or kwargs)
        original(context, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    yield loads


async def test_no_ca_bundle_is_loaded_until_the_first_request(
    ca_loads: list[object], images: ImageServer, tmp_path: Path
) -> None:
    main = new_http_client(build_config(tmp_path / "ab.db"))
    image = new_image_http_client(ImagesConfig())
    assert ca_loads == []

    response = await image.get(f"{images.base_url}/png")
    assert (response.status_code, response.content) == (200, make_png())
    assert len(ca_loads) == 1
    await image.get(f"{images.base_url}/png")
    assert len(ca_loads) == 1, "built once"

    await main.aclose()  # never used: nothing was built, nothing to close
    await image.aclose()
    with pytest.raises(RuntimeError):
        await image.get(f"{images.base_url}/png")
    assert len(ca_loads) == 1


async def test_proxies_from_the_environment_still_apply(
    monkeypatch: pytest.MonkeyPatch, images: ImageServer, tmp_path: Path
) -> None:
    # The image server stands in for a proxy: it is asked for the absolute URL.
    monkeypatch.setenv("HTTP_PROXY", images.base_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with new_http_client(build_config(tmp_path / "ab.db")) as http:
        response = await http.get("http://wecom.invalid/png")
    assert (response.status_code, response.content) == (200, make_png())
    assert images.paths == ["/png"]


async def test_the_image_client_ignores_proxies_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, images: ImageServer
) -> None:
    monkeypatch.setenv("HTTP_PROXY", images.base_url)
    async with new_image_http_client(ImagesConfig()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("http://wecom.invalid/png")
    assert images.paths == []
