"""Settings: embedded defaults, a TOML file over them, environment variables over both."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import ConfigError, load_settings


def test_embedded_defaults_need_no_file_and_no_service():
    settings = load_settings(environ={})
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    assert settings.media.ice_addresses == ("127.0.0.1",)
    assert settings.ice_servers == ()
    assert settings.server.base_url == "http://127.0.0.1:8080"


def test_file_then_environment_override(tmp_path: Path):
    path = tmp_path / "site.toml"
    path.write_text('[server]\nport = 9000\npublic_url = "https://consult.example.org/"\n'
                    '[ice]\nservers = [{ urls = "turn:turn.example.org:3478", '
                    'username = "u", credential = "c" }]\n')
    settings = load_settings(path, environ={"HUIZHEN_SERVER_PORT": "9100",
                                            "HUIZHEN_MEDIA_KEYFRAME_INTERVAL": "1.5",
                                            "HUIZHEN_MEDIA_ICE_ADDRESSES": '["10.0.0.5"]'})
    assert settings.server.port == 9100
    assert settings.server.base_url == "https://consult.example.org"
    assert settings.media.keyframe_interval == 1.5
    assert settings.media.ice_addresses == ("10.0.0.5",)
    assert settings.ice_servers[0].to_json() == {
        "urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "c"}


def test_config_path_from_environment(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text("[storage]\ndata_dir = '/srv/huizhen'\n")
    settings = load_settings(environ={"HUIZHEN_CONFIG": str(path)})
    assert str(settings.storage.data_dir) == "/srv/huizhen"


@pytest.mark.parametrize(
    ("content", "env", "message"),
    [
        ("[server]\nprot = 1\n", {}, "unknown key server.prot"),
        ("[serve]\nport = 1\n", {}, "unknown section [serve]"),
        ("[server\n", {}, "cannot read configuration file"),
        ("", {"HUIZHEN_SERVER_PORT": "eighty"}, "HUIZHEN_SERVER_PORT"),
        ("", {"HUIZHEN_MEDIA_ICE_ADDRESSES": "{}"}, "HUIZHEN_MEDIA_ICE_ADDRESSES"),
        ("[ice]\nservers = [{ username = 'x' }]\n", {}, "needs 'urls'"),
    ],
)
def test_bad_configuration_is_refused_clearly(tmp_path: Path, content, env, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(path, environ=env)


def test_device_section(tmp_path: Path):
    path = tmp_path / "beds.toml"
    path.write_text('[devices]\nhl7_listen = "0.0.0.0:2575"\n'
                    'beds = [{ room = "icu3-bed12", camera = "visca-udp://10.0.0.9" }]\n')
    settings = load_settings(path, environ={})
    assert settings.devices.hl7_address == ("0.0.0.0", 2575)
    assert settings.devices.beds == ({"room": "icu3-bed12", "camera": "visca-udp://10.0.0.9"},)
    assert settings.devices.database_for(Path("/d")) == "sqlite:////d/devices.sqlite3"
    assert load_settings(environ={}).devices.hl7_address is None
    with pytest.raises(ConfigError, match="HOST:PORT"):
        load_settings(environ={"HUIZHEN_DEVICES_HL7_LISTEN": "nowhere"})
    with pytest.raises(ConfigError, match="list of tables"):
        load_settings(environ={"HUIZHEN_DEVICES_BEDS": '["x"]'})


def test_recorder_section():
    settings = load_settings(environ={"HUIZHEN_RECORDER_HANDOFF_URL": "http://records/api",
                                      "HUIZHEN_RECORDER_RETENTION_DAYS": "30"})
    assert settings.recorder.enabled is True
    assert settings.recorder.directory_for(Path("/d")) == Path("/d/recordings")
    assert (settings.recorder.handoff_url, settings.recorder.retention_days) == (
        "http://records/api", 30)
    off = load_settings(environ={"HUIZHEN_RECORDER_ENABLED": "no"})
    assert off.recorder.enabled is False


def test_cluster_section_is_off_by_default_and_checked() -> None:
    alone = load_settings(environ={})
    assert not alone.cluster.enabled and alone.node_url == "http://127.0.0.1:8080"
    settings = load_settings(environ={"HUIZHEN_CLUSTER_REDIS_URL": "redis://10.0.0.9:6379/0",
                                      "HUIZHEN_CLUSTER_NODE_URL": "https://media-2.example/",
                                      "HUIZHEN_CLUSTER_HEARTBEAT": "0.5"})
    assert settings.cluster.enabled and settings.node_url == "https://media-2.example"
    assert (settings.cluster.heartbeat, settings.cluster.node_ttl) == (0.5, 3.0)
    for env, message in [
            ({"HUIZHEN_CLUSTER_REDIS_URL": "10.0.0.9:6379"}, "cluster.redis_url must start"),
            ({"HUIZHEN_CLUSTER_NODE_URL": "media-2:8080"}, "cluster.node_url must be"),
            ({"HUIZHEN_CLUSTER_NODE_TTL": "1.0"}, "cluster.node_ttl must be longer"),
            ({"HUIZHEN_CLUSTER_KEY_PREFIX": ""}, "cluster.key_prefix must not be empty"),
            ({"HUIZHEN_CLUSTER_BUSY_CPU": "0"}, "cluster.busy_cpu must be greater than 0")]:
        with pytest.raises(ConfigError, match=message):
            load_settings(environ=env)


def test_records_section():
    settings = load_settings(environ={"HUIZHEN_RECORDS_PORT": "9091"})
    assert settings.records.port == 9091
    assert settings.records.database_for(Path("/d")) == "sqlite:////d/records.sqlite3"
    assert settings.recorder.handoff_token == ""


def test_records_webhooks_come_from_the_file_or_the_environment() -> None:
    hooks = ('[{"url": "https://sms.example/hook", "secret": "s3cret-s3cret-s3cret", '
             '"events": ["*"]}]')
    settings = load_settings(None, environ={"HUIZHEN_RECORDS_WEBHOOKS": hooks})
    assert settings.records.webhooks == ({"url": "https://sms.example/hook",
                                          "secret": "s3cret-s3cret-s3cret", "events": ["*"]},)
    assert load_settings(None, environ={}).records.webhooks == ()
    with pytest.raises(ConfigError, match=r"records\.webhooks must be a list of tables"):
        load_settings(None, environ={"HUIZHEN_RECORDS_WEBHOOKS": '["x"]'})
