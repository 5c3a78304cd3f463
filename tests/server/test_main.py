"""`saywell-server` in an install without the server extra says what to install, not a traceback."""
import subprocess
import sys

CLIENT_ONLY = """
import sys
sys.modules["prometheus_client"] = None  # as in `pip install saywell`: the server extra's modules are absent
sys.modules["grpc_reflection"] = None
from saywell.server.__main__ import main
sys.exit(main(["--port", "0", "--metrics-port", "0"]))
"""


def test_a_client_only_install_is_told_to_install_the_server_extra():
    result = subprocess.run([sys.executable, "-c", CLIENT_ONLY], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "pip install 'saywell[server]'" in result.stderr and "Traceback" not in result.stderr
