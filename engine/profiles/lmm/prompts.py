"""The prompt the model answers: the instruction of the mode (shared) in each architecture's chat layout, with
one audio placeholder where its processor expects it. The engine and `saywell train` build it through the same
functions (architectures.py picks one), so a fine-tuned adapter sees at serving time the prompt it was trained
on."""
from __future__ import annotations

from collections.abc import Sequence

SYSTEM = "You assess the English pronunciation of language learners. Answer with one JSON object only."
CLOSED = ("The learner read aloud: \"{reference}\". Assess the reading: sentence accuracy, fluency, prosody, total "
          "and completeness (0-10); for each reference word its accuracy, stress and total (0-10), its error "
          "(none, mispronunciation, omission) and its phones (0-2, with the phone heard where it differs).")
OPEN = ("The learner answered freely. Write the words said and assess them: sentence accuracy, fluency, prosody "
        "and total (0-10); for each word its accuracy, stress and total (0-10), its error (none, "
        "mispronunciation) and its phones (0-2, with the phone heard where it differs).")


def instruction(reference: Sequence[str] | None) -> str:
    """`reference`: closed mode's normalised words, or None (open mode)."""
    return CLOSED.format(reference=" ".join(reference)) if reference is not None else OPEN


def qwen2_audio_prompt(reference: Sequence[str] | None, audio_token: str = "<|AUDIO|>") -> str:
    """Qwen2-Audio's chat layout up to where the assessment starts (its processor expands `audio_token`)."""
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
            f"Audio 1: <|audio_bos|>{audio_token}<|audio_eos|>\n{instruction(reference)}<|im_end|>\n"
            "<|im_start|>assistant\n")


def phi4_prompt(reference: Sequence[str] | None, audio_token: str = "<|endoftext11|>") -> str:
    """Phi-4-multimodal's chat layout (`<|role|>content<|end|>`, then `<|assistant|>`) up to where the assessment
    starts. Microsoft's model card writes the audio as `<|audio_1|>`, which its remote-code processor turned
    into the audio token; transformers' native Phi4MultimodalProcessor expands the tokenizer's `audio_token`
    (`<|endoftext11|>`) itself, so that is what the prompt carries."""
    return f"<|system|>{SYSTEM}<|end|><|user|>{audio_token}{instruction(reference)}<|end|><|assistant|>"


prompt_text = qwen2_audio_prompt  # the name this module had when Qwen2-Audio was the only architecture
