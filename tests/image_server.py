"""A loopback image server for the image fetcher and the channels that post
images: real PNG/JPEG bytes, non-images, redirect chains and slow answers,
and a record of what it was asked for.

Its fixtures (``image_server``, ``images``) live in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from alertbridge.messengers.wecom.robot import ROBOT_IMAGE_LIMIT


def make_png(width: int = 2, height: int = 2, pad: int = 0) -> bytes:
    """A valid PNG; ``pad`` adds an ancillary chunk of that many bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    extra = chunk(b"tEXt", b"pad\x00" + b"x" * pad) if pad else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + extra
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG = make_png()
# The start of a JFIF file and its end marker: enough for magic-byte checks.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64 + b"\xff\xd9"
# Larger than a robot may post: served at /big.
BIG_PNG = make_png(pad=ROBOT_IMAGE_LIMIT + 1)


@dataclass
class ImageServer:
    """What the image server saw; ``base_url`` once started."""

    base_url: str = ""
    port: int = 0
    hosts: list[str] = field(default_factory=list)  # Host header of each request
    paths: list[str] = field(default_factory=list)
    cookies: list[str] = field(default_factory=list)  # Cookie header of each request

    def reset(self) -> None:
        self.hosts.clear()
        self.paths.clear()
        self.cookies.clear()


def image_app(seen: ImageServer) -> Starlette:
    """Serves images, non-images, redirect chains and slow answers.

    ``BIG_PNG`` is served at /big (above a robot's image limit).
    """

    async def record(request: Request) -> None:
        seen.hosts.append(request.headers.get("host", ""))
        seen.paths.append(request.url.path)
        seen.cookies.append(request.headers.get("cookie", ""))

    async def png(request: Request) -> Response:
        await record(request)
        return Response(PNG, media_type="image/png")

    async def cookie_png(request: Request) -> Response:
        await record(request)
        response = Response(PNG, media_type="image/png")
        response.set_cookie("session", "from-the-image-server")
        return response

    async def jpeg(request: Request) -> Response:
        await record(request)
        return Response(JPEG, media_type="image/jpeg")

    async def other_png(request: Request) -> Response:
        await record(request)
        return Response(make_png(3, 1), media_type="image/png; charset=binary")

    async def big_png(request: Request) -> Response:
        await record(request)
        return Response(BIG_PNG, media_type="image/png")

    async def png_as_jpeg(request: Request) -> Response:
        await record(request)
        return Response(PNG, media_type="image/jpeg")

    async def garbage(request: Request) -> Response:
        await record(request)
        return Response(b"<html>not an image</html>", media_type="image/png")

    async def html(request: Request) -> Response:
        await record(request)
        return Response(b"<html></html>", media_type="text/html")

    async def untyped(request: Request) -> Response:
        await record(request)
        return Response(PNG)

    async def declared_huge(request: Request) -> Response:
        await record(request)
        return Response(PNG + b"\x00" * 5000, media_type="image/png")

    async def streamed_huge(request: Request) -> StreamingResponse:
        await record(request)

        async def forever() -> AsyncIterator[bytes]:
            yield PNG
            while True:
                yield b"\x00" * 1024
                await asyncio.sleep(0)

        return StreamingResponse(forever(), media_type="image/png")

    async def slow(request: Request) -> Response:
        await record(request)
        await asyncio.sleep(3)
        return Response(PNG, media_type="image/png")

    async def drip(request: Request) -> StreamingResponse:
        await record(request)

        async def trickle() -> AsyncIterator[bytes]:
            yield PNG[:8]
            for _ in range(100):
                await asyncio.sleep(0.1)
                yield b"\x00"

        return StreamingResponse(trickle(), media_type="image/png")

    async def status(request: Request) -> Response:
        await record(request)
        return Response(b"no", status_code=int(request.path_params["code"]))

    async def redirect(request: Request) -> Response:
        await record(request)
        hops = int(request.path_params["hops"])
        return RedirectResponse("/png" if hops == 0 else f"/redirect/{hops - 1}", status_code=302)

    async def redirect_to(request: Request) -> Response:
        await record(request)
        return RedirectResponse(request.query_params["url"], status_code=307)

    async def redirect_nowhere(request: Request) -> Response:
        await record(request)
        return Response(status_code=302)

    return Starlette(
        routes=[
            Route("/png", png),
            Route("/jpeg", jpeg),
            Route("/cookie.png", cookie_png),
            Route("/other.png", other_png),
            Route("/big", big_png),
            Route("/png-as-jpeg", png_as_jpeg),
            Route("/garbage", garbage),
            Route("/html", html),
            Route("/untyped", untyped),
            Route("/declared-huge", declared_huge),
            Route("/streamed-huge", streamed_huge),
            Route("/slow", slow),
            Route("/drip", drip),
            Route("/status/{code:int}", status),
            Route("/redirect/{hops:int}", redirect),
            Route("/to", redirect_to),
            Route("/redirect-nowhere", redirect_nowhere),
        ]
    )
