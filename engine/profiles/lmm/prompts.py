"""The prompt the model answers: Qwen2-Audio's chat layout with one audio and the instruction of the mode. The
engine and `saywell train` build it with this one function, so a fine-tuned adapter sees at serving time the
prompt it was trained on."""
from __future__ import annotations

from collections.abc import Sequence

SYSTEM = "You assess the English pronunciation of language learners. Answer with one JSON object only."
CLOSED = ("The learner read aloud: \"{reference}\". Assess the reading: sentence accuracy, fluency, prosody, total "
          "and completeness (0-10); for each reference word its accuracy, stress and total (0-10), its error "
          "(none, mispronunciation, omission) and its phones (0-2, with the phone heard where it differs).")
OPEN = ("The learner answered freely. Write the words said and assess them: sentence accuracy, fluency, prosody "
        "and total (0-10); for each word its accuracy, stress and total (0-10), its error (none, "
        "mispronunciation) and its phones (0-2, with the phone heard where it differs).")


def prompt_text(reference: Sequence[str] | None, audio_token: str = "<|AUDIO|>") -> str:
    """The prompt up to where the assessment starts; `reference`: closed mode's normalised words, or None."""
    instruction = CLOSED.format(reference=" ".join(reference)) if reference is not None else OPEN
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
            f"Audio 1: <|audio_bos|>{audio_token}<|audio_eos|>\n{instruction}<|im_end|>\n<|im_start|>assistant\n")
