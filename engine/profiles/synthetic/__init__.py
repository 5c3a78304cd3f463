"""Placeholder scores at no cost, for load testing the serving path (transport, VAD, ordering, limits) apart
from the models. Not an assessment: `info.capabilities.assessment` is False and every result says so."""
from saywell.engine.profiles.synthetic.engine import SyntheticEngine

__all__ = ["SyntheticEngine"]
