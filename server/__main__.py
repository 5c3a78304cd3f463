"""`saywell-server` / `python -m saywell.server`: run the gRPC server with flags or SAYWELL_* variables."""
from __future__ import annotations

import asyncio
import os
import sys

from saywell.server.config import load_config, native_environment
from saywell.server.logging_setup import configure_logging


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(argv)
        configure_logging(config.log_level, config.log_json)
        os.environ.update(native_environment(config))
        from saywell.server.app import serve  # heavy imports only once the config is valid
    except ValueError as exc:
        print(f"saywell-server: invalid configuration: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # a client-only install: `pip install saywell` has no server
        print(f"saywell-server: the server is not installed (no module {exc.name!r}); install it with "
              "pip install 'saywell[server]'", file=sys.stderr)
        return 2
    from saywell.engine.types import EngineError

    try:
        asyncio.run(serve(config))
    except EngineError as exc:  # the engine cannot start: a model folder, a device, a Triton server
        print(f"saywell-server: the engine could not start: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
