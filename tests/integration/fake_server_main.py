"""`python fake_server_main.py PORT`: a real saywell gRPC server holding the fake engine, in its own process,
so a soak can measure the server's memory alone."""
import asyncio
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from fake_engine import FakeEngine  # noqa: E402

from saywell.server.app import SaywellServer  # noqa: E402
from saywell.server.config import ServerConfig  # noqa: E402


async def main(port: int) -> None:
    server = SaywellServer(ServerConfig(port=port, metrics_port=0, warm_up=False, max_concurrent_streams=16,
                                        log_level="WARNING"), engine=FakeEngine(delay_s=0.03))
    await server.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
