"""The GPU engine of the design: Whisper, a frame phone classifier with batched Viterbi and posterior GOP, an SSL
encoder pooled over the aligned words and MultiPA-style heads, every stage a batched torch module (CUDA or CPU)."""
from saywell.engine.profiles.neural.engine import NeuralEngine

__all__ = ["NeuralEngine"]
