"""TLS, mutual TLS, bearer tokens with scopes, and per-client stream limits against real servers.

Certificates are made at test time: a CA, a server certificate for 127.0.0.1 and localhost, a client certificate.
"""
import datetime
import ipaddress
import json
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from saywell.client import SaywellClient, bench, cli, load_audio
from saywell.client.errors import RpcFailed, rpc_failed
from saywell.client.options import ClientOptions
from saywell.server.config import ServerConfig
from saywell.v1 import assessment_pb2 as pb
from saywell.v1 import assessment_pb2_grpc as pb_grpc

from live_server import FIXTURES, RunningServer

x509 = pytest.importorskip("cryptography.x509", reason="the dev extra's `cryptography` makes the test certificates")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

CONFIG = pb.StreamAssessRequest(config=pb.StreamingAssessConfig(
    audio=pb.AudioConfig(encoding=pb.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16000)))


def _issue(subject: str, key, issuer_name, issuer_key, *, ca=False, usage=None, sans=()):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Paths of ca.pem, server.pem/.key and client.pem/.key."""
    root = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue("saywell test CA", ca_key, None, None, ca=True)
    leaves = {
        "server": (ExtendedKeyUsageOID.SERVER_AUTH,
                   (x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"))),
        "client": (ExtendedKeyUsageOID.CLIENT_AUTH, ()),
    }
    paths = {"ca": root / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, (usage, sans) in leaves.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _issue(f"saywell test {name}", key, ca.subject, ca_key, usage=usage, sans=sans)
        paths[name] = root / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[name + "_key"] = root / f"{name}.key"
        paths[name + "_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return {k: str(v) for k, v in paths.items()}


def running(**security):
    return RunningServer(ServerConfig(port=0, metrics_port=0, warm_up=False, grace_s=1.0, **security))


@pytest.fixture(scope="module")
def tls_server(pki):
    server = running(tls_cert=pki["server"], tls_key=pki["server_key"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls_server(pki):
    server = running(tls_cert=pki["server"], tls_key=pki["server_key"], tls_client_ca=pki["ca"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    tokens = tmp_path_factory.mktemp("auth") / "tokens"
    tokens.write_text("# test tokens\nfull-token\ncaps-token capabilities  # dashboards\n\n")
    server = running(tokens_file=str(tokens), tokens="assess-token:assess", max_streams_per_client=2)
    yield server
    server.stop()


def stream_brother(client: SaywellClient):
    return [r.WhichOneof("event") for r in client.stream_file(load_audio(FIXTURES / "brother.wav"), chunk_ms=200,
                                                             interim_results=False)]


def failure(call) -> RpcFailed:
    with pytest.raises(RpcFailed) as error:
        call()
    return error.value


# --- TLS ---

def test_tls_client_gets_capabilities_and_a_stream_assessed(tls_server, pki):
    with SaywellClient(tls_server.target, options=ClientOptions(tls_root_cert=pki["ca"])) as client:
        assert "AUDIO_ENCODING_LINEAR16" in [pb.AudioEncoding.Name(e) for e in client.capabilities().encodings]
        kinds = stream_brother(client)
    assert kinds.count("utterance") == 1 and kinds[-1] == "summary"


def test_plaintext_client_cannot_talk_to_a_tls_server(tls_server):
    with SaywellClient(tls_server.target, options=ClientOptions(timeout_s=5)) as client:
        assert failure(client.capabilities).code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_a_client_certificate(mtls_server, pki):
    with_cert = ClientOptions(tls_root_cert=pki["ca"], tls_client_cert=pki["client"],
                              tls_client_key=pki["client_key"])
    with SaywellClient(mtls_server.target, options=with_cert) as client:
        assert client.capabilities().limits.max_concurrent_streams >= 1
    without = ClientOptions(tls_root_cert=pki["ca"], timeout_s=5)
    with SaywellClient(mtls_server.target, options=without) as client:
        assert failure(client.capabilities).code == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError, match="tls_client_cert and tls_client_key must be set together"):
        ClientOptions(tls_root_cert=pki["ca"], tls_client_cert=pki["client"])


def test_cli_mutual_tls_flags(mtls_server, pki, capsys):
    tls = ["--target", mtls_server.target, "--tls-ca", pki["ca"], "--json"]
    assert cli.main(["capabilities", *tls, "--tls-cert", pki["client"], "--tls-key", pki["client_key"]]) == 0
    assert json.loads(capsys.readouterr().out)["limits"]["max_concurrent_streams"] >= 1
    assert cli.main(["capabilities", *tls, "--tls-cert", pki["client"], "--timeout", "5"]) == 2
    assert "must be set together" in capsys.readouterr().err


def test_bench_load_tests_a_mutual_tls_server(mtls_server, pki, tmp_path, capsys):
    report = tmp_path / "bench.json"
    args = ["--target", mtls_server.target, "--tls-ca", pki["ca"], "--streams", "1", "--duration", "0.5",
            "--realtime-factor", "20", "--chunk-ms", "200", "--data", str(FIXTURES), "--report", str(report)]
    assert bench.main(args + ["--tls-cert", pki["client"], "--tls-key", pki["client_key"]]) == 0
    result = json.loads(report.read_text())
    assert result["utterances"] >= 1 and result["errors"] == {}
    with pytest.raises(SystemExit):
        bench.main(args + ["--tls-cert", pki["client"]])
    assert "mutual TLS needs --tls-ca, --tls-cert and --tls-key together" in capsys.readouterr().err


# --- tokens and scopes ---

def test_missing_and_wrong_tokens_are_unauthenticated(auth_server):
    with SaywellClient(auth_server.target) as client:
        error = failure(client.capabilities)
        assert error.code == grpc.StatusCode.UNAUTHENTICATED and "missing bearer token" in error.details
        error = failure(lambda: stream_brother(client))
        assert error.code == grpc.StatusCode.UNAUTHENTICATED and "missing bearer token" in error.details
    with SaywellClient(auth_server.target, options=ClientOptions(bearer_token="full-tokenX")) as client:
        error = failure(client.capabilities)
        assert error.code == grpc.StatusCode.UNAUTHENTICATED and error.details == "invalid bearer token"
    registry = auth_server.server.metrics.registry
    assert registry.get_sample_value("saywell_errors_total", {"code": "UNAUTHENTICATED"}) >= 3


def test_a_token_without_the_scope_is_permission_denied(auth_server):
    with SaywellClient(auth_server.target, options=ClientOptions(bearer_token="caps-token")) as client:
        assert client.capabilities().engine.name
        error = failure(lambda: stream_brother(client))
        assert error.code == grpc.StatusCode.PERMISSION_DENIED and "'assess' scope" in error.details
    with SaywellClient(auth_server.target, options=ClientOptions(bearer_token="assess-token")) as client:
        error = failure(client.capabilities)
        assert error.code == grpc.StatusCode.PERMISSION_DENIED and "'capabilities' scope" in error.details


def test_a_good_token_assesses_by_stream_and_unary(auth_server):
    with SaywellClient(auth_server.target, options=ClientOptions(bearer_token="assess-token")) as client:
        assert stream_brother(client).count("utterance") == 1
        response = client.assess_source(load_audio(FIXTURES / "brother.wav"))
    assert {"brother"} <= {w.word for w in response.assessment.words}


def test_health_and_reflection_need_no_token(auth_server):
    with grpc.insecure_channel(auth_server.target) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="")).status
    assert status == health_pb2.HealthCheckResponse.SERVING


# --- per-client stream limit ---

def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_client_beyond_its_stream_limit_is_refused(auth_server):
    access = auth_server.server.access
    gate = threading.Event()

    def held():
        yield CONFIG
        gate.wait(10)

    metadata = (("authorization", "Bearer full-token"),)
    with grpc.insecure_channel(auth_server.target) as channel:
        stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
        try:
            first, second = (stub.StreamAssess(held(), metadata=metadata) for _ in range(2))
            wait_for(lambda: sum(access.active_streams().values()) == 2)
            with pytest.raises(grpc.RpcError) as error:
                list(stub.StreamAssess(iter([CONFIG]), metadata=metadata))
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "is at its limit of 2 concurrent streams" in error.value.details()
            assert error.value.details().startswith("client token ")  # the client, never its secret
            assert ("retry-after-ms", "1000") in tuple(error.value.trailing_metadata())
            assert rpc_failed(error.value, auth_server.target).retry_after_ms == 1000, "the client reads it"
            other = list(stub.StreamAssess(iter([CONFIG]), metadata=(("authorization", "Bearer assess-token"),)))
            assert other[-1].WhichOneof("event") == "summary"  # another client has its own budget
        finally:
            gate.set()
        assert list(first)[-1].WhichOneof("event") == "summary" and list(second)
    wait_for(lambda: not access.active_streams())


def test_without_auth_the_limit_is_per_peer_host(tmp_path):
    server = running(max_streams_per_client=1)
    gate = threading.Event()

    def held():
        yield CONFIG
        gate.wait(10)

    try:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.PronunciationAssessmentServiceStub(channel)
            first = stub.StreamAssess(held())
            wait_for(lambda: server.server.access.active_streams() == {"127.0.0.1": 1})
            with pytest.raises(grpc.RpcError) as error:
                list(stub.StreamAssess(iter([CONFIG])))
            gate.set()
            list(first)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.value.details() == "client 127.0.0.1 is at its limit of 1 concurrent streams; retry after 1000 ms"
    finally:
        gate.set()
        server.stop()
