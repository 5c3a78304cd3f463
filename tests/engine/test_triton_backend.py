"""The neural profile with `--backend triton` against a REAL tritonserver (the one nvidia-pytriton bundles, CPU),
serving a repository that deploy/triton/export.py exported from the tiny random models that
test_neural_engine.py trains for a few steps, served without their trees (numpy, in the engine's process whatever
the backend; the `heads_only` fixture says why batching tests leave them out).

What it proves: Triton's scores equal the local backend's on the same audio (the Python backend runs the same
stage code: equal within 1e-4, measured 0.0); a Triton lost mid-way fails the utterance with UnavailableError
naming the model, and the same engine serves again once Triton is back; start-up is refused, naming the URL and
the model, when Triton is unreachable or lacks the version exported from the engine's own weights.
"""
import asyncio
import importlib.util
import pathlib
import shutil
import socket
import subprocess
import time

import pytest
from test_neural_engine import TEXTS, LiveEngine, audio_of, heads_only, trained  # noqa: F401 - fixtures

from saywell.engine.api import create_engine
from saywell.engine.backends.triton import wire
from saywell.engine.backends.triton.serve import LocalTriton
from saywell.engine.options import BatchingOptions, EngineOptions, TritonOptions
from saywell.engine.profiles.neural.plumbing import write_random_heads
from saywell.engine.types import AssessmentRequest, EngineError, UnavailableError, WordErrorType

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOLERANCE = 1e-4  # Triton runs the local stage's own code on the same float32 inputs
pytest.importorskip("pytriton", reason="the bundled tritonserver comes with nvidia-pytriton (saywell's dev extra)")


def export_module():
    spec = importlib.util.spec_from_file_location("saywell_triton_export", ROOT / "deploy" / "triton" / "export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def repository(heads_only, tmp_path_factory) -> pathlib.Path:
    folder = tmp_path_factory.mktemp("triton-repository")
    versions = export_module().export(heads_only, folder)
    assert versions == {stage: 1 for stage in wire.STAGES}
    return folder


@pytest.fixture(scope="module")
def triton(repository, tmp_path_factory):
    server = LocalTriton(repository, grpc_port=free_port())
    log = (tmp_path_factory.mktemp("triton-log") / "tritonserver.log").open("w")
    server.start(stdout=log, stderr=log)
    try:
        server.wait_ready(90)
        yield server
    finally:
        server.cleanup()
        log.close()


def options(folder, url: str, **triton) -> EngineOptions:
    batching = BatchingOptions(max_batch_size=8, max_wait_ms=50)
    return EngineOptions(profile="neural", backend="triton", model_dir=str(folder), device="cpu",
                         asr_batching=batching, triton=TritonOptions(url=url, **triton))


@pytest.fixture(scope="module")
def engines(heads_only, triton):
    local = LiveEngine(EngineOptions(profile="neural", model_dir=str(heads_only), device="cpu",
                                     asr_batching=BatchingOptions(max_batch_size=8, max_wait_ms=50)))
    remote = LiveEngine(options(heads_only, triton.url, timeout_s=5.0))
    yield local, remote
    remote.close()
    local.close()


def assert_same(a, b) -> None:
    assert a.transcript == b.transcript and [w.text for w in a.words] == [w.text for w in b.words]
    for field in ("accuracy", "fluency", "prosody", "total", "completeness"):
        x, y = getattr(a.scores, field), getattr(b.scores, field)
        assert (x is None and y is None) or abs(x - y) <= TOLERANCE, field
    for u, v in zip(a.words, b.words):
        assert (u.start_ms, u.end_ms, u.error_type, u.needs_improvement) == (v.start_ms, v.end_ms, v.error_type,
                                                                             v.needs_improvement)
        assert max(abs(u.accuracy - v.accuracy), abs(u.stress - v.stress), abs(u.total - v.total)) <= TOLERANCE
        assert [(p.phone, p.start_ms, p.end_ms) for p in u.phones] == [(q.phone, q.start_ms, q.end_ms)
                                                                       for q in v.phones]
        assert max(abs(p.goodness - q.goodness) for p, q in zip(u.phones, v.phones)) <= TOLERANCE
        assert max(abs(p.accuracy - q.accuracy) for p, q in zip(u.phones, v.phones)) <= TOLERANCE  # the phone head
        assert [name for name, _ in u.phones[0].heard] == [name for name, _ in v.phones[0].heard]


def requests() -> list[AssessmentRequest]:
    return [AssessmentRequest(audio_of("fox"), reference_text=TEXTS["fox"]), AssessmentRequest(audio_of("brother")),
            AssessmentRequest(audio_of("coffee"), reference_text=TEXTS["coffee"])]


def test_triton_scores_equal_the_local_backends_alone_and_batched(engines):
    local, remote = engines
    assert remote.engine.info.backend == "triton"
    assert remote.engine.info.model_versions == local.engine.info.model_versions
    expected = [local.run(local.engine.assess(r)) for r in requests()]
    alone = [remote.run(remote.engine.assess(r)) for r in requests()]
    remote.batches.clear()

    async def together():
        return await asyncio.gather(*(remote.engine.assess(r) for r in requests()))

    batched = remote.run(together())
    for want, one, many in zip(expected, alone, batched):
        assert_same(want, one)
        assert_same(want, many)
    # three utterances of three lengths in one saywell batch: one padded request per model stage
    assert max(size for stage, size in remote.batches if stage == "ssl") >= 2


def test_start_is_refused_when_triton_is_unreachable_or_lacks_the_exported_version(heads_only, triton, tmp_path):
    port = free_port()  # nothing listens there
    with pytest.raises(EngineError, match=rf"Triton at 127\.0\.0\.1:{port} is unreachable"):
        create_engine(options(heads_only, f"127.0.0.1:{port}", timeout_s=2.0))
    with pytest.raises(EngineError, match="--triton-url"):
        create_engine(options(heads_only, ""))
    other = tmp_path / "other-heads"
    shutil.copytree(heads_only, other)
    write_random_heads_into(other, seed=7)
    with pytest.raises(EngineError) as refused:
        create_engine(options(other, triton.url))
    message = str(refused.value)
    assert "saywell_heads" in message and triton.url in message and "none exported from" in message
    assert "export.py" in message


def write_random_heads_into(folder: pathlib.Path, seed: int) -> None:
    """Other heads (other weights, so another hash) in a copy of the model folder."""
    from saywell.engine.profiles.neural.config import NeuralConfig

    write_random_heads(NeuralConfig.load(folder), seed=seed)


def test_triton_lost_mid_way_fails_utterances_as_unavailable_and_service_resumes_by_itself(engines, triton):
    _, remote = engines
    request = requests()[0]
    before = remote.run(remote.engine.assess(request))
    assert remote.run(remote.engine.check()) is None, "ready: the server's health says SERVING"
    triton.stop()
    reason = remote.run(remote.engine.check())
    assert reason and triton.url in reason, "the server's health turns NOT_SERVING, naming Triton"
    with pytest.raises(UnavailableError, match=r"model saywell_(phone_posteriors|ssl|heads) version 1: Triton at "
                                               rf"{triton.url} is unavailable"):
        remote.run(remote.engine.assess(request))
    with pytest.raises(UnavailableError):  # the next one too: nothing hangs, nothing is cached
        remote.run(remote.engine.assess(requests()[1]))
    triton.start(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    triton.wait_ready(90)
    # As the server does: ask the engine every so often until it can assess again (health SERVING), by itself.
    deadline = time.monotonic() + 30
    while (reason := remote.run(remote.engine.check())) is not None:
        assert time.monotonic() < deadline, f"the engine never reconnected: {reason}"
        time.sleep(0.5)
    after = remote.run(remote.engine.assess(request))  # the same engine: no restart of saywell
    assert_same(before, after)


def test_an_export_into_an_older_repository_brings_the_heads_inputs_up_to_date(heads_only, repository, tmp_path):
    """A repository exported before the heads had a phone level keeps its versions, and a new export gives its
    config this saywell's inputs (the new ones optional, so the older versions' requests still pass)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    older = tmp_path / "older"
    shutil.copytree(repository, older)
    config = older / "saywell_heads" / "config.pbtxt"
    text = config.read_text()
    start = text.index("  {\n    # the alignment's numbers per phone")
    config.write_text(text[:start].rstrip().rstrip(",") + "\n]" + text[text.index("\noutput ["):])
    assert "PHONE_VALUES" not in config.read_text() and "PHONE_SCORES" in config.read_text()
    other = tmp_path / "other-heads"
    shutil.copytree(heads_only, other)
    write_random_heads_into(other, seed=8)
    assert export_module().export(other, older)["heads"] == 2
    parsed = text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())
    inputs = {i.name: i.optional for i in parsed.input}
    assert {name: inputs.get(name) for name in (wire.PHONE_VALUES, wire.PHONE_IDS, wire.PHONE_OWNER,
                                                wire.PHONE_LENGTHS)} == dict.fromkeys(
        (wire.PHONE_VALUES, wire.PHONE_IDS, wire.PHONE_OWNER, wire.PHONE_LENGTHS), True)
    assert sorted(parsed.parameters) == ["saywell_v1", "saywell_v2"], "both versions are described"


def test_a_triton_backed_engine_blends_the_folders_trees_into_its_scores(trained, heads_only, triton):
    """The trees run in the engine's process after the heads, whatever the backend. Not compared with the local
    backend: Triton's stage outputs equal the local ones within ~1e-6, and a tree split (or the flag threshold)
    can turn that into a step. Compared instead with the same Triton's heads served alone, plus the trees'
    own prediction for the utterance's item, every run one utterance at a time on the same Triton."""
    remote = LiveEngine(options(trained, triton.url, timeout_s=5.0))
    alone = LiveEngine(options(heads_only, triton.url, timeout_s=5.0))
    try:
        assert remote.engine.info.model_versions["trees"].startswith("trees.npz@")
        assert "trees" not in alone.engine.info.model_versions
        trees = remote.engine.trees.load()
        for request in requests():
            blended, heads = remote.run(remote.engine.assess(request)), alone.run(alone.engine.assess(request))
            graph = remote.run(remote.engine.analyse(request.audio, request.reference_text, (request.closed,)))
            words, sentence = trees.predict(remote.engine.heads_item(graph.frames, graph.analyses[request.closed].inputs))
            assert abs(blended.scores.accuracy - (0.5 * heads.scores.accuracy + 0.5 * sentence[0])) <= TOLERANCE
            assert abs(blended.scores.total - (0.5 * heads.scores.total + 0.5 * sentence[3])) <= TOLERANCE
            said = [i for i, (u, v) in enumerate(zip(blended.words, heads.words))
                    if WordErrorType.OMISSION not in (u.error_type, v.error_type)]
            assert said, "every word omitted: nothing compared"
            for i in said:
                assert abs(blended.words[i].accuracy - (0.5 * heads.words[i].accuracy + 0.5 * words[i, 0])) <= TOLERANCE
    finally:
        alone.close()
        remote.close()
