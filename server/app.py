"""Builds and runs the gRPC server: assessment service, health, reflection, metrics, graceful shutdown."""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2

from saywell.engine.api import Engine, create_engine
from saywell.engine.options import (AsrOptions, BatchingOptions, EarlyAnalysisOptions, EngineOptions, TritonOptions,
                                    with_target_asr)
from saywell.server.auth import AccessInterceptor, load_tokens
from saywell.server.config import ServerConfig
from saywell.server.metrics import ServerMetrics
from saywell.server.servicer import PronunciationAssessmentServiceServicer, StatusInterceptor
from saywell.server.tls import server_credentials, tls_mode
from saywell.v1 import assessment_pb2, assessment_pb2_grpc

log = logging.getLogger(__name__)
SERVICE_NAME = assessment_pb2.DESCRIPTOR.services_by_name["PronunciationAssessmentService"].full_name
# grpcio-reflection serves only grpc.reflection.v1alpha; tools that speak v1 (newer grpcurl, Postman) ask
# grpc.reflection.v1.ServerReflection. Its messages are v1alpha's under another package (the same fields and
# numbers, so the same bytes on the wire): the v1alpha servicer answers both names.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
REFLECTED_SERVICES = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                      reflection.SERVICE_NAME, REFLECTION_V1)


def reflection_v1_handler() -> grpc.GenericRpcHandler:
    servicer = reflection_aio.ReflectionServicer(REFLECTED_SERVICES)
    return grpc.method_handlers_generic_handler(REFLECTION_V1, {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)})


def engine_options(config: ServerConfig) -> EngineOptions:
    """The engine's options from the server's flags: the one place where the two meet."""
    batching = BatchingOptions(max_batch_size=config.max_batch_size, max_wait_ms=config.max_wait_ms,
                               max_queue_size=config.max_queue_size)
    asr = AsrOptions(model=config.asr_model, allow_download=config.allow_download, beam_size=config.asr_beam_size,
                     window_s=config.asr_window_s)
    aligners = dataclasses.replace(batching, workers=config.aligner_workers)
    early = EarlyAnalysisOptions(speculative_finals=config.speculative_finals,
                                 max_backlog=config.speculation_max_backlog)
    triton = TritonOptions(url=config.triton_url, timeout_s=config.triton_timeout_s, ssl=config.triton_ssl,
                           root_certificates=config.triton_root_certificates, private_key=config.triton_private_key,
                           certificate_chain=config.triton_certificate_chain)
    return with_target_asr(EngineOptions(profile=config.profile, backend=config.backend, device=config.device,
                                         model_dir=config.model_dir, allow_download=config.allow_download, asr=asr,
                                         asr_batching=batching, align_batching=aligners, loop_batching=aligners,
                                         early=early, triton=triton, interim_words=config.interim_words),
                           config.target_asr_model)


class SaywellServer:
    """Owns the engine, the grpc.aio server and the metrics endpoint of one process."""

    def __init__(self, config: ServerConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.metrics = ServerMetrics()
        self.engine = engine or create_engine(engine_options(config), on_batch=self.metrics.on_batch)
        self.metrics.watch(self.engine.backlog, config.max_concurrent_streams)
        self.health = health_aio.HealthServicer()
        self.access = AccessInterceptor(load_tokens(config), config.max_streams_per_client, self.metrics)
        self.server: grpc.aio.Server | None = None
        self._health_task: asyncio.Task | None = None
        self.unready_reason: str | None = None  # why the engine cannot assess now (health NOT_SERVING), if so
        self.port: int | None = None
        self._metrics_server = None

    async def start(self) -> int:
        self.engine.start()
        if self.config.warm_up:
            await self.engine.warm_up()
        limit = self.config.max_message_bytes
        self.server = grpc.aio.server(
            interceptors=[self.access, StatusInterceptor(self.metrics)],  # refuse before anything else runs
            options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit),
                     ("grpc.keepalive_time_ms", 30_000), ("grpc.keepalive_timeout_ms", 10_000),
                     ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                     ("grpc.keepalive_permit_without_calls", 1)])
        servicer = PronunciationAssessmentServiceServicer(self.engine, self.config, self.metrics)
        assessment_pb2_grpc.add_PronunciationAssessmentServiceServicer_to_server(servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(REFLECTED_SERVICES, self.server)
        self.server.add_generic_rpc_handlers((reflection_v1_handler(),))
        address, credentials = f"{self.config.host}:{self.config.port}", server_credentials(self.config)
        if credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.config.host}:{self.config.port}")
        await self.server.start()
        for service in ("", SERVICE_NAME):
            await self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if self.config.health_check_interval_s > 0:
            self._health_task = asyncio.ensure_future(self._watch_engine(self.config.health_check_interval_s))
        if self.config.metrics_port:
            self._metrics_server, _ = self.metrics.serve_http(self.config.metrics_port, self.config.host)
        log.info("saywell serving", extra={"address": f"{self.config.host}:{self.port}",
                                           "metrics_port": self.config.metrics_port, "profile": self.engine.info.profile,
                                           "backend": self.engine.info.backend, "asr": self.config.asr_model,
                                           "tls": tls_mode(self.config), "auth": "on" if self.access.tokens else "off",
                                           "max_streams_per_client": self.config.max_streams_per_client})
        return self.port

    async def stop(self) -> None:
        """Stops accepting, lets in-flight streams finish within the grace period, then closes the engine."""
        if self.server is None:
            return
        if self._health_task is not None:
            self._health_task.cancel()
            self._health_task = None
        await self.health.enter_graceful_shutdown()
        log.info("draining", extra={"grace_s": self.config.grace_s})
        await self.server.stop(self.config.grace_s)
        await self.engine.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.server = None
        log.info("stopped")


    async def check_engine(self) -> None:
        """Health follows the engine: NOT_SERVING while it says it cannot assess, SERVING again once it can."""
        try:
            reason = await self.engine.check()
        except Exception as exc:  # a failing check is itself a reason not to take new work
            reason = f"engine check failed: {exc}"
        if reason == self.unready_reason:
            return
        self.unready_reason = reason
        status = health_pb2.HealthCheckResponse.NOT_SERVING if reason else health_pb2.HealthCheckResponse.SERVING
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)
        if reason:
            log.warning("engine cannot assess: health NOT_SERVING", extra={"reason": reason})
        else:
            log.info("engine can assess again: health SERVING")

    async def _watch_engine(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.check_engine()


async def serve(config: ServerConfig) -> None:
    server = SaywellServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
