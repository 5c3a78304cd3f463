"""saywell's model stages inside Triton's Python backend: `deploy/triton/export.py` copies this file into every
version folder of the repository (`<model>/<version>/model.py`) beside the weights and `saywell.json`.

It runs the local stage's own code (`EncoderStage`, `HeadsStage`): every request Triton's dynamic batcher
gathered is cut back into saywell items, the items of all requests run as ONE `run_batch` (one padded forward,
batch-invariant), and each request gets its items' results. So Triton's scores are the local backend's, within
float tolerance.

Its environment needs saywell's engine (torch, transformers): the Python backend's interpreter must import
`saywell`. `python -m saywell.engine.backends.triton.serve` passes the running interpreter's site directories in
SAYWELL_SITE_DIRS; in a Triton container install saywell[server] into its Python (deploy/triton/README.md).
"""
import functools
import json
import os
import site
from pathlib import Path

for _directory in filter(None, os.environ.get("SAYWELL_SITE_DIRS", "").split(os.pathsep)):
    site.addsitedir(_directory)  # also runs their .pth files (an editable saywell install)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from saywell.engine.backends.triton import wire  # noqa: E402
from saywell.engine.profiles.neural.config import ModelRef  # noqa: E402
from saywell.engine.profiles.neural.encoders import EncoderStage, load_frame_classifier, load_ssl_encoder  # noqa: E402
from saywell.engine.profiles.neural.heads import HeadsItem, HeadsStage  # noqa: E402


def _tensor(name, array):
    return pb_utils.Tensor(name, np.ascontiguousarray(array))


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]
        description = json.loads((folder / "saywell.json").read_text())
        self.stage_name = description["stage"]
        on_gpu = args.get("model_instance_kind") == "GPU"
        device = torch.device(f"cuda:{args['model_instance_device_id']}" if on_gpu else "cpu")
        weights = ModelRef("model", folder / "model")
        if self.stage_name == wire.HEADS_STAGE:
            self.stage = HeadsStage(folder / "heads.pt", device)
        elif self.stage_name == "phone_posteriors":
            classes = int(description["meta"]["classes"])
            self.stage = EncoderStage(self.stage_name, functools.partial(load_frame_classifier, weights, classes,
                                                                         False), device)
        elif self.stage_name == "ssl":
            self.stage = EncoderStage(self.stage_name, functools.partial(load_ssl_encoder, weights, False), device)
        else:
            raise pb_utils.TritonModelException(f"saywell.json names an unknown stage {self.stage_name!r}")
        self.stage.load()

    def _items(self, request):
        def get(name):
            return pb_utils.get_input_tensor_by_name(request, name).as_numpy()

        if self.stage_name != wire.HEADS_STAGE:
            return wire.unpad(get(wire.AUDIO), get(wire.LENGTHS))
        word_lengths, phone_lengths = get(wire.WORD_LENGTHS), get(wire.PHONE_LENGTHS)
        return [HeadsItem(*parts) for parts in zip(
            wire.unpad(get(wire.FRAMES), get(wire.FRAME_LENGTHS)), wire.unpad(get(wire.SPANS), word_lengths),
            wire.unpad(get(wire.WORD_VALUES), word_lengths), get(wire.SENTENCE_VALUES),
            wire.unpad(get(wire.PHONE_VALUES), phone_lengths), wire.unpad(get(wire.PHONE_IDS), phone_lengths),
            wire.unpad(get(wire.PHONE_OWNER), phone_lengths))]

    def _response(self, results):
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{self.stage_name}: {errors[0]}"))
        if self.stage_name != wire.HEADS_STAGE:
            output, lengths = wire.pad(results, np.float32)
            return pb_utils.InferenceResponse([_tensor(wire.OUTPUT, output), _tensor(wire.OUTPUT_LENGTHS, lengths)])
        words, _ = wire.pad([w for w, _, _ in results], np.float32)
        sentence = np.stack([s for _, s, _ in results]).astype(np.float32)
        phones, _ = wire.pad([p for _, _, p in results], np.float32)
        return pb_utils.InferenceResponse([_tensor(wire.WORD_SCORES, words), _tensor(wire.SENTENCE_SCORES, sentence),
                                           _tensor(wire.PHONE_SCORES, phones)])

    def execute(self, requests):
        """Every request's items in one run_batch; each request gets back its own items' results."""
        items, owners = [], []
        responses = [None] * len(requests)
        for index, request in enumerate(requests):
            try:
                mine = self._items(request)
            except Exception as exc:  # noqa: BLE001 - a malformed request fails alone, as an error response
                responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                    f"{self.stage_name}: malformed request: {exc}"))
                continue
            items.extend(mine)
            owners.extend([index] * len(mine))
        results = self.stage.run_batch(items) if items else []
        for index in range(len(requests)):
            if responses[index] is None:
                responses[index] = self._response([r for r, owner in zip(results, owners) if owner == index])
        return responses

    def finalize(self):
        self.stage.close()
