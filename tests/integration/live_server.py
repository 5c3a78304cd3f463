"""A real saywell server (real engine, packaged models) on a free loopback port, run on its own event loop thread."""
import asyncio
import pathlib
import threading

from saywell.server.app import SaywellServer
from saywell.server.config import ServerConfig

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures"


class RunningServer:
    def __init__(self, config: ServerConfig, engine=None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = SaywellServer(config, engine=engine)
        self.port = self.call(self.server.start())
        self.target = f"127.0.0.1:{self.port}"

    def call(self, coro, timeout: float = 120):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
