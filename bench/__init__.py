"""The fan-out benchmark: `python -m bench` (or `make bench`).

One load generator (asyncio + websockets' Sans-I/O protocol, loopback only) drives three
servers in one invocation, alternating rounds under the same load:

- ours: Daphne + rooms.consumers.RoomConsumer (in-memory layer; also with Redis);
- tutorial: the classic synchronous WebsocketConsumer (bench/tutorial.py);
- ceiling: a bare `websockets` broadcast server (bench/ceiling.py).

Results are in bench/RESULTS.md; the last run's JSON in bench/results/.
"""
