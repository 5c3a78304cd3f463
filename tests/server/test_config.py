import pytest

from saywell.server.config import ServerConfig, load_config, native_environment


def test_defaults_listen_on_loopback_50051():
    config = load_config([], environ={})
    assert (config.host, config.port) == ("127.0.0.1", 50051)
    assert config.max_concurrent_streams >= 1


def test_flags_beat_environment_which_beats_defaults():
    env = {"SAYWELL_PORT": "6000", "SAYWELL_MAX_CONCURRENT_STREAMS": "3", "SAYWELL_LOG_JSON": "false"}
    config = load_config(["--port", "7000"], environ=env)
    assert config.port == 7000
    assert config.max_concurrent_streams == 3
    assert config.log_json is False


def test_stream_timeouts_and_rates_have_flags_and_environment_variables():
    config = load_config(["--idle-timeout-s", "0", "--max-pending-finals-per-stream", "3"],
                         environ={"SAYWELL_CONFIG_TIMEOUT_S": "2.5", "SAYWELL_MAX_MESSAGES_PER_SECOND": "50"})
    assert (config.config_timeout_s, config.idle_timeout_s) == (2.5, 0.0)
    assert (config.max_messages_per_second, config.max_pending_finals_per_stream) == (50, 3)
    defaults = load_config([], environ={})
    assert (defaults.config_timeout_s, defaults.idle_timeout_s) == (10.0, 60.0)
    assert (defaults.max_messages_per_second, defaults.max_pending_finals_per_stream) == (200, 2)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="SAYWELL_PORT"):
        load_config([], environ={"SAYWELL_PORT": "many"})
    with pytest.raises(ValueError, match="SAYWELL_WARM_UP"):
        load_config([], environ={"SAYWELL_WARM_UP": "maybe"})


@pytest.mark.parametrize("field, value, message", [
    ("port", 70000, "port must be"),
    ("metrics_port", -1, "metrics_port"),
    ("max_concurrent_streams", 0, "max_concurrent_streams"),
    ("max_message_bytes", 1000, "max_message_bytes"),
    ("max_utterance_ms", 500, "max_utterance_ms"),
    ("max_stream_ms", 1000, "max_stream_ms"),
    ("max_reference_text_chars", 0, "max_reference_text_chars"),
    ("interim_step_ms", 50, "interim_step_ms"),
    ("interim_step_growth", -1.0, "interim_step_growth"),
    ("max_interim_decodes", -1, "max_interim_decodes"),
    ("grace_s", -1.0, "grace_s"),
    ("max_batch_size", 0, "max_batch_size"),
    ("max_engine_backlog", 0, "max_engine_backlog"),
    ("speculation_max_backlog", -1, "speculation_max_backlog"),
    ("asr_beam_size", 0, "asr_beam_size"),
    ("asr_window_s", 2.0, "asr_window_s"),
    ("config_timeout_s", 0.0, "config_timeout_s"),
    ("idle_timeout_s", -1.0, "idle_timeout_s"),
    ("max_messages_per_second", -1, "max_messages_per_second"),
    ("max_pending_finals_per_stream", 0, "max_pending_finals_per_stream"),
])
def test_every_limit_is_validated(field, value, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**{field: value})


def test_asr_decoding_flags_reach_the_engine_options():
    from saywell.server.app import engine_options

    asr = engine_options(load_config(["--asr-beam-size", "5", "--asr-window-s", "0"], environ={})).asr
    assert (asr.beam_size, asr.window_s) == (5, 0.0)
    assert (engine_options(ServerConfig()).asr.beam_size, engine_options(ServerConfig()).asr.window_s) == (1, 10.0)


def test_the_servers_target_asr_is_the_engines_default():
    """The open checkpoint is fitted with the engine's default target ASR: the server must serve the same."""
    from saywell.engine.options import EngineOptions
    from saywell.server.app import engine_options

    assert ServerConfig().target_asr_model == EngineOptions().target_asr.model
    assert engine_options(ServerConfig()).target_asr == EngineOptions().target_asr
    assert engine_options(ServerConfig(target_asr_model="")).target_asr is None


def test_the_native_kernel_cache_is_bounded_before_the_engine_loads():
    assert native_environment(ServerConfig()) == {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8"}
    assert native_environment(load_config(["--onednn-cache-capacity", "32"]))["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "32"
    with pytest.raises(ValueError, match="onednn_cache_capacity"):
        ServerConfig(onednn_cache_capacity=-1)
