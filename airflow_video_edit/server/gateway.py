"""Gateway mode (``--gateway-quirks``): the local server behaves like an AI gateway in front of
the Videos API (the LiteLLM proxy, routing to Veo, Runway, ...), so tests meet what real
deployments do:

- job ids are rewritten to long opaque strings, as LiteLLM does: ``video_`` + standard base64 of
  ``litellm:custom_llm_provider:<provider>;model_id:<deployment>;video_id:<upstream id>``, about
  240 characters, and they may contain ``/``, ``+`` and ``=`` (sent percent-encoded in a path);
- ``variant`` on ``/content`` is ignored: every download is the MP4;
- a request that may carry a ``model`` (create, edit, extension, character) must carry one: the
  gateway routes by it (400 without);
- list answers 400 and delete 405 (not routed);
- a wrong or missing key is a 400, not a 401.

A remix carries no model in the spec: the gateway routes it by the id. Character ids are left as
they are.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from urllib.parse import quote, unquote

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "video_"
_TEMPLATE = "litellm:custom_llm_provider:{provider};model_id:{model_id};video_id:{video_id}"
_MARKER = "litellm:custom_llm_provider:"
PROVIDER = "openai"
# A router deployment id (free text in a gateway's config): long, as gateways' are, so that the
# whole id is about 240 characters; its "?" and "~" fall where base64 makes them "/" and "+", so
# every id of this mode carries both (ids of real gateways may), and "=" padding often.
DEPLOYMENT = "sora-2-" + hashlib.sha256(b"airflow-video-edit gateway").hexdigest() + "-?region=eu__~v2"


def external_id(video_id: str) -> str:
    """The gateway's id for the upstream ``video_id``."""
    text = _TEMPLATE.format(provider=PROVIDER, model_id=DEPLOYMENT, video_id=video_id)
    return PREFIX + base64.b64encode(text.encode()).decode()


def internal_id(video_id: str) -> str:
    """The upstream id inside a gateway id; any other id is returned as it is (passed upstream)."""
    if not video_id.startswith(PREFIX):
        return video_id
    encoded = video_id[len(PREFIX) :]
    try:
        text = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return video_id
    if not text.startswith(_MARKER) or ";video_id:" not in text:
        return video_id
    return text.rsplit(";video_id:", 1)[1]


class GatewayPaths:
    """Decodes the id segment of ``/v1/videos/{id}...`` from the raw path, before routing.

    A gateway id may hold ``/``: the client sends it as ``%2F``, which the ASGI server has already
    decoded in ``scope["path"]``, so routing would split the id. This layer reads the id from
    ``raw_path`` and routes the upstream id instead (what a gateway forwards).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw and raw.startswith(b"/v1/videos/"):
            parts = raw.decode("latin-1").split("/")  # "", "v1", "videos", id, ...
            video_id = unquote(parts[3])
            upstream = internal_id(video_id)
            if upstream != video_id:
                parts[3] = quote(upstream, safe="")
                path = "/".join(unquote(part) for part in parts)
                scope = {**scope, "path": path, "raw_path": "/".join(parts).encode("latin-1")}
        await self.app(scope, receive, send)
