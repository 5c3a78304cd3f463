"""Token parsing, constant-time lookup, the interceptor's decisions, and validation of the security config."""
import asyncio
import hashlib
import hmac

import grpc
import pytest

from saywell.server import auth
from saywell.server.auth import (SCOPES, AccessInterceptor, Refused, find_token, load_tokens, parse_token_env,
                                 parse_token_lines, peer_host)
from saywell.server.config import ServerConfig, build_parser, load_config
from saywell.server.metrics import ServerMetrics

ALL = frozenset(SCOPES)


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def test_token_file_lines_with_scopes_comments_and_blank_lines():
    text = "# tokens for the chatbot\n\nalpha\n  beta assess   # the mobile app\ngamma assess,capabilities\n"
    tokens = parse_token_lines(text)
    assert [t.digest for t in tokens] == [digest("alpha"), digest("beta"), digest("gamma")]
    assert [t.scopes for t in tokens] == [ALL, {"assess"}, ALL]


def test_token_env_entries_with_plus_separated_scopes():
    tokens = parse_token_env(" alpha , beta:capabilities,,gamma:assess+capabilities")
    assert [t.digest for t in tokens] == [digest("alpha"), digest("beta"), digest("gamma")]
    assert [t.scopes for t in tokens] == [ALL, {"capabilities"}, ALL]
    assert parse_token_env("") == []


@pytest.mark.parametrize("text, message", [
    ("alpha admin", "tokens file line 1: unknown scope 'admin'; scopes are assess, capabilities"),
    ("\nalpha assess extra", "tokens file line 2: expected `token \\[scope,scope\\]`, got 3 fields"),
    ("al\"pha", "tokens file line 1: a token may hold only"),
])
def test_bad_token_file_lines_name_the_line_and_never_the_token(text, message):
    with pytest.raises(ValueError, match=message) as error:
        parse_token_lines(text)
    assert "alpha" not in str(error.value) and 'al"pha' not in str(error.value)


def test_bad_env_entry_names_the_entry():
    with pytest.raises(ValueError, match="SAYWELL_TOKENS entry 2: unknown scope 'admin'"):
        parse_token_env("alpha,beta:admin")


def test_tokens_from_file_and_env_are_merged_and_duplicates_refused(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("alpha assess\n")
    tokens = load_tokens(ServerConfig(tokens_file=str(path), tokens="beta:capabilities"))
    assert {t.digest for t in tokens} == {digest("alpha"), digest("beta")}
    with pytest.raises(ValueError, match="the same token is configured twice"):
        ServerConfig(tokens_file=str(path), tokens="alpha")


def test_token_lookup_compares_every_token_in_constant_time(monkeypatch):
    tokens = parse_token_env("alpha,beta,gamma")
    calls, compare = [], hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", recording)
    assert find_token(tokens, "alpha") is tokens[0]  # a match on the first token does not stop the loop
    assert [b for _, b in calls] == [t.digest for t in tokens]
    assert all(a == digest("alpha") and len(a) == len(b) for a, b in calls)  # equal lengths: no length leak
    calls.clear()
    assert find_token(tokens, "delta") is None
    assert len(calls) == 3


def test_token_names_are_digest_prefixes_not_secrets():
    (token,) = parse_token_env("s3cret")
    assert token.name == "token " + digest("s3cret").hex()[:8]
    assert "s3cret" not in repr(token)


@pytest.mark.parametrize("peer, host", [
    ("ipv4:10.0.0.7:51234", "10.0.0.7"),
    ("ipv6:[::1]:5555", "::1"),
    ("ipv6:%5B::1%5D:5555", "::1"),
    ("unix:/tmp/saywell.sock", "unix:/tmp/saywell.sock"),
])
def test_peer_host_drops_the_port(peer, host):
    assert peer_host(peer) == host


SERVICE = "/saywell.v1.PronunciationAssessmentService/"


def interceptor(env: str) -> AccessInterceptor:
    return AccessInterceptor(parse_token_env(env), 4, ServerMetrics())


@pytest.mark.parametrize("metadata, method, code, message", [
    ((), "StreamAssess", grpc.StatusCode.UNAUTHENTICATED, "missing bearer token"),
    ((("authorization", "Basic YWxwaGE="),), "Assess", grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token"),
    ((("authorization", "Bearer delta"),), "Assess", grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token"),
    ((("authorization", "Bearer beta"),), "StreamAssess", grpc.StatusCode.PERMISSION_DENIED,
     "lacks the 'assess' scope needed by StreamAssess"),
    ((("authorization", "Bearer gamma"),), "GetCapabilities", grpc.StatusCode.PERMISSION_DENIED,
     "lacks the 'capabilities' scope"),
])
def test_refusals(metadata, method, code, message):
    with pytest.raises(Refused) as error:
        interceptor("alpha,beta:capabilities,gamma:assess").authenticate(SERVICE + method, metadata)
    assert error.value.code == code and message in error.value.message


def test_accepted_tokens_and_auth_off():
    access = interceptor("alpha,beta:capabilities")
    assert access.authenticate(SERVICE + "Assess", (("authorization", "bearer alpha"),)).scopes == ALL
    assert access.authenticate(SERVICE + "GetCapabilities", (("authorization", "Bearer beta"),)) is not None
    assert interceptor("").authenticate(SERVICE + "Assess", ()) is None


class FakeContext:
    def __init__(self, peer="ipv4:127.0.0.1:4000"):
        self._peer = peer
        self.trailers = ()

    def peer(self):
        return self._peer

    def set_trailing_metadata(self, trailers):
        self.trailers = tuple(trailers)

    async def abort(self, code, message):
        raise grpc.RpcError(code, message)


class Details:
    def __init__(self, method, metadata=()):
        self.method, self.invocation_metadata = method, metadata


def test_stream_limit_counts_per_client_and_frees_on_close():
    async def scenario():
        access = AccessInterceptor((), 2, ServerMetrics())
        gate = asyncio.Event()

        async def held(requests, context):
            await gate.wait()
            yield "done"

        async def continuation(details):
            return grpc.stream_stream_rpc_method_handler(held)

        handler = await access.intercept_service(continuation, Details(SERVICE + "StreamAssess"))
        streams = [handler.stream_stream(iter(()), FakeContext()).__anext__() for _ in range(2)]
        tasks = [asyncio.ensure_future(s) for s in streams]
        await asyncio.sleep(0)
        assert access.active_streams() == {"127.0.0.1": 2}
        other = asyncio.ensure_future(handler.stream_stream(iter(()), FakeContext("ipv4:10.0.0.2:1")).__anext__())
        await asyncio.sleep(0)
        with pytest.raises(grpc.RpcError) as error:
            await handler.stream_stream(iter(()), FakeContext()).__anext__()
        assert error.value.args == (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                    "client 127.0.0.1 is at its limit of 2 concurrent streams; retry after 1000 ms")
        assert access.active_streams() == {"127.0.0.1": 2, "10.0.0.2": 1}
        gate.set()
        assert await asyncio.gather(*tasks, other) == ["done"] * 3
        return access

    access = asyncio.run(scenario())
    assert access.metrics.errors.labels("RESOURCE_EXHAUSTED")._value.get() == 1


def test_health_and_reflection_pass_untouched():
    async def scenario():
        access = interceptor("alpha")
        handler = grpc.unary_unary_rpc_method_handler(lambda r, c: r)

        async def continuation(details):
            return handler

        for method in ("/grpc.health.v1.Health/Check", "/grpc.reflection.v1alpha.ServerReflection/Info"):
            assert await access.intercept_service(continuation, Details(method)) is handler
        assert await access.intercept_service(continuation, Details(SERVICE + "Assess")) is not handler

    asyncio.run(scenario())


# --- configuration of the security fields ---

@pytest.fixture
def pem(tmp_path):
    path = tmp_path / "server.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return str(path)


def test_security_defaults_are_off_and_clients_are_not_limited():
    config = load_config([], environ={})
    assert (config.tls_cert, config.tls_key, config.tls_client_ca, config.tokens_file, config.tokens) == ("",) * 5
    assert config.max_streams_per_client == 0 and not config.tls


def test_security_flags_and_environment(pem, tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("alpha\n")
    config = load_config(["--tls-cert", pem, "--tls-key", pem, "--tokens-file", str(tokens)],
                         environ={"SAYWELL_TLS_CLIENT_CA": pem, "SAYWELL_MAX_STREAMS_PER_CLIENT": "3",
                                  "SAYWELL_TOKENS": "beta:assess"})
    assert config.tls and config.tls_client_ca == pem and config.max_streams_per_client == 3
    assert config.tokens == "beta:assess" and "beta" not in repr(config)


def test_tokens_are_never_a_flag():
    assert "--tokens" not in build_parser().format_help().split()
    with pytest.raises(SystemExit):
        load_config(["--tokens", "alpha"], environ={})


@pytest.mark.parametrize("kwargs, message", [
    ({"tls_cert": "PEM"}, "tls_cert and tls_key must be set together"),
    ({"tls_key": "PEM"}, "tls_cert and tls_key must be set together"),
    ({"tls_client_ca": "PEM"}, r"tls_client_ca \(mutual TLS\) needs TLS: set tls_cert and tls_key too"),
    ({"tls_cert": "PEM", "tls_key": "/nonexistent/key.pem"}, "tls_key file '/nonexistent/key.pem' does not exist"),
    ({"tls_cert": "/nonexistent/c.pem", "tls_key": "PEM"}, "tls_cert file '/nonexistent/c.pem' does not exist"),
    ({"tls_cert": "PEM", "tls_key": "PEM", "tls_client_ca": "/nonexistent/ca.pem"},
     "tls_client_ca file '/nonexistent/ca.pem' does not exist"),
    ({"tokens_file": "/nonexistent/tokens"}, "tokens_file file '/nonexistent/tokens' does not exist"),
    ({"tokens": "alpha:root"}, "SAYWELL_TOKENS entry 1: unknown scope 'root'"),
    ({"max_streams_per_client": -1}, r"max_streams_per_client must be >= 0 \(0: unlimited\)"),
])
def test_every_security_field_is_validated(pem, kwargs, message):
    kwargs = {k: pem if v == "PEM" else v for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=message):
        ServerConfig(**kwargs)


def test_non_pem_files_are_refused(tmp_path, pem):
    from saywell.server.tls import server_credentials, tls_mode

    junk = tmp_path / "key.txt"
    junk.write_text("not a key")
    with pytest.raises(ValueError, match="tls_key file .*key.txt' is not PEM"):
        ServerConfig(tls_cert=pem, tls_key=str(junk))
    with pytest.raises(ValueError, match="tls_client_ca file .*key.txt' is not PEM"):
        ServerConfig(tls_cert=pem, tls_key=pem, tls_client_ca=str(junk))
    assert server_credentials(ServerConfig()) is None
    assert tls_mode(ServerConfig(tls_cert=pem, tls_key=pem, tls_client_ca=pem)) == "mutual"
