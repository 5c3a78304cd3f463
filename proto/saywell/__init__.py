"""saywell: streaming pronunciation assessment."""
__version__ = "0.1.0"
