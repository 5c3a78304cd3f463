"""A fine-tuned speech LLM (Qwen2-Audio or Phi-4-multimodal + a LoRA adapter) that hears the utterance and writes
its assessment as JSON, constrained to the schema and parsed onto the engine's result types."""
from saywell.engine.profiles.lmm.engine import LmmEngine

__all__ = ["LmmEngine"]
