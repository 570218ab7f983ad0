"""``GET /v1/models``: the models this key may use, in OpenAI's list shape."""

from __future__ import annotations

import orjson

from tokenomy.errors import TokenomyError
from tokenomy.gateway.asgi import JSON, Scope, Send, send_bytes, send_error
from tokenomy.gateway.state import Gateway

CREATED = 1_700_000_000


async def list_models(gateway: Gateway, scope: Scope, send: Send) -> None:
    from tokenomy.gateway.proxy import authenticate

    try:
        principal = authenticate(gateway, scope).principal
    except TokenomyError as exc:
        return await send_error(send, exc, [])
    data = [
        {
            "id": model.name,
            "object": "model",
            "created": CREATED,
            "owned_by": model.upstream,
            "tokenomy": {
                "tier": model.tier,
                "kind": model.kind,
                "input_per_mtok": str(model.price.input_per_mtok),
                "output_per_mtok": str(model.price.output_per_mtok),
            },
        }
        for model in gateway.catalog
        if principal.may_use(model.name)
    ]
    data += [
        {
            "id": name,
            "object": "model",
            "created": CREATED,
            "owned_by": "tokenomy-route",
            "tokenomy": {"route": route.strategy},
        }
        for name, route in gateway.settings.routes.items()
        if principal.may_use(name)
    ]
    await send_bytes(send, 200, orjson.dumps({"object": "list", "data": data}), [JSON])
