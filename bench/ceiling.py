"""The ceiling: a bare `websockets` server that broadcasts every frame it receives.

`python -m bench.ceiling PORT`. No framework, no auth, no storage, no rendering: what one
Python process on this machine can fan out at best. GET /healthz answers 200.
"""

import asyncio
import sys
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.limits import raise_nofile

clients: set[ServerConnection] = set()


def health(connection: ServerConnection, request: Any) -> Any:
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def handler(websocket: ServerConnection) -> None:
    clients.add(websocket)
    try:
        async for message in websocket:
            broadcast(clients, message)
    finally:
        clients.discard(websocket)


async def main(port: int) -> None:
    raise_nofile()
    async with serve(
        handler,
        "127.0.0.1",
        port,
        process_request=health,
        compression=None,  # Daphne does not negotiate permessage-deflate either
        max_size=64 * 1024,
        backlog=1024,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
