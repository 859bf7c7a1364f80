"""Load settings: embedded defaults < optional TOML file < environment variables.

The embedded ``default.toml`` is the schema: a key that is not in it is refused,
so a typo in a site's file or environment fails at start-up instead of being ignored.
Every ``HUIZHEN_*`` environment variable must name a setting (``HUIZHEN_<SECTION>_<KEY>``)
or be one of the few documented others (``NON_SETTING_VARIABLES``, and ``HUIZHEN_TEST_*``
for the test suite): ``HUIZHEN_SERVR_PORT`` is refused, not silently ignored.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

ENV_PREFIX = "HUIZHEN_"
# Environment variables that are not settings: the configuration file's path, and the
# test suite's and benchmarks' own switches. Names starting with HUIZHEN_TEST_ are left
# to the test suite too (no settings section is called "test").
NON_SETTING_VARIABLES = frozenset({
    "HUIZHEN_CONFIG",           # the TOML file over the embedded defaults
    "HUIZHEN_SCREENSHOTS",      # browser tests: keep screenshots in this directory
    "HUIZHEN_BENCH_SECRET",     # benchmarks: the token secret of the server under test
})
TEST_VARIABLE_PREFIX = "HUIZHEN_TEST_"
# Keys that existed once, with what replaced them: refused with this hint, in a file or
# the environment (a site's old value must be re-decided, not silently reinterpreted).
RETIRED_KEYS = {
    ("media", "room_participants"): "media.room_publishers and media.room_viewers (one "
                                    "room's people who may publish, and who only receive; "
                                    "the recorder counts in neither)",
}
PORT_RANGE = (1, 65535)


class ConfigError(ValueError):
    """A configuration file or variable is malformed or names an unknown key."""


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class TurnSettings:
    """A TURN server with coturn's ``use-auth-secret``: credentials are minted per
    participant from ``secret`` (signaling/turn.py), valid ``ttl`` seconds."""

    urls: tuple[str, ...]
    secret: str
    ttl: int


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True
    # Scrapers let in without a token, by TCP peer address; empty: a token is needed.
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


@dataclass(frozen=True)
class LoggingSettings:
    format: str = "text"  # "text" or "json"


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    public_url: str
    max_message_bytes: int

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class AuthSettings:
    token_secret: str
    issuer: str
    audience: str
    default_ttl: int


@dataclass(frozen=True)
class MediaSettings:
    ice_addresses: tuple[str, ...]
    keyframe_interval: float
    retransmission_buffer: int
    room_publishers: int = 16
    room_viewers: int = 1000
    setup_concurrency: int = 16  # 0: no bound
    admit_cpu: float = 0.85  # share of a core; 0: viewers are never refused for load
    publications_per_participant: int = 4
    subscriptions_per_participant: int = 32
    pending_per_participant: int = 4
    answer_timeout: float = 15.0
    connect_timeout: float = 30.0
    empty_room_grace: float = 60.0  # seconds; 0: an empty room closes at once
    simulcast: bool = False


@dataclass(frozen=True)
class SignalingSettings:
    join_timeout: float = 10.0
    messages_per_second: float = 20.0
    message_burst: int = 60
    outgoing_queue: int = 512
    sockets_per_token: int = 4
    peer_connections_per_token: int = 16
    sockets_per_address: int = 64


@dataclass(frozen=True)
class ClusterSettings:
    """Several nodes on Redis ([cluster]); an empty ``redis_url`` means one node."""

    redis_url: str = ""
    node_url: str = ""
    key_prefix: str = "huizhen:"
    heartbeat: float = 1.0
    node_ttl: float = 3.0
    busy_cpu: float = 0.85
    # Viewers joining at a node that is not the room's origin are served there, the node
    # relaying the room from its origin (a cascaded room); False: they are redirected.
    cascade: bool = True

    @property
    def enabled(self) -> bool:
        return bool(self.redis_url)


@dataclass(frozen=True)
class StorageSettings:
    data_dir: Path


@dataclass(frozen=True)
class RecorderSettings:
    enabled: bool
    directory: str
    handoff_url: str
    handoff_token: str
    retention_days: int
    retention_max_mib: int = 0
    retention_unclaimed_days: float = 7.0
    disk_warn_mib: int = 2048
    disk_warn_percent: float = 5.0
    disk_stop_mib: int = 256
    disk_stop_percent: float = 1.0
    disk_resume_mib: int = 512
    disk_reserve_mib: int = 8
    disk_check_interval: float = 5.0
    disk_failure_hold: float = 60.0

    def directory_for(self, data_dir: Path) -> Path:
        return Path(self.directory) if self.directory else data_dir / "recordings"


@dataclass(frozen=True)
class VodSettings:
    """Background rendering of teaching videos ([vod])."""

    auto: bool = True
    concurrency: int = 1
    nice: int = 10
    max_auto_minutes: float = 240.0
    startup_hours: float = 24.0


@dataclass(frozen=True)
class RecordsSettings:
    host: str
    port: int
    database_url: str
    token_secret: str
    max_upload_bytes: int
    secure_cookies: bool = False
    # Signed webhooks on every state change, as given: [{url, secret, events}] (checked by
    # consult_api.webhooks.parse_targets when the service starts).
    webhooks: tuple[dict[str, Any], ...] = ()
    # The workspace's own public URL and the media server's (for live pages); empty:
    # derived from host/port and from server.base_url.
    public_url: str = ""
    media_url: str = ""

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    def database_for(self, data_dir: Path) -> str:
        return self.database_url or f"sqlite:///{data_dir / 'records.sqlite3'}"


@dataclass(frozen=True)
class DeviceSettings:
    database_url: str
    hl7_listen: str
    hl7_default_zone: str
    beds: tuple[dict[str, Any], ...]
    hl7_max_connections: int = 256
    hl7_max_connections_per_address: int = 8
    hl7_first_message_timeout: float = 60.0
    hl7_idle_timeout: float = 3900.0
    hl7_decode_workers: int = 2

    def database_for(self, data_dir: Path) -> str:
        return self.database_url or f"sqlite:///{data_dir / 'devices.sqlite3'}"

    @property
    def hl7_address(self) -> tuple[str, int] | None:
        if not self.hl7_listen:
            return None
        host, _, port = self.hl7_listen.rpartition(":")
        return host or "127.0.0.1", int(port)

    def hl7_listener_options(self) -> dict[str, Any]:
        """Keyword arguments of the HL7 ``ListenerConfig`` (limits and timeouts)."""
        return {"max_connections": self.hl7_max_connections,
                "max_connections_per_address": self.hl7_max_connections_per_address,
                "first_message_timeout": self.hl7_first_message_timeout,
                "idle_timeout": self.hl7_idle_timeout,
                "decode_workers": self.hl7_decode_workers}


@dataclass(frozen=True)
class Settings:
    server: ServerSettings
    auth: AuthSettings
    media: MediaSettings
    storage: StorageSettings
    devices: DeviceSettings
    recorder: RecorderSettings
    records: RecordsSettings
    ice_servers: tuple[IceServer, ...] = field(default_factory=tuple)
    signaling: SignalingSettings = field(default_factory=SignalingSettings)
    turn: TurnSettings | None = None
    ice_transport_policy: str = "all"
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    vod: VodSettings = field(default_factory=VodSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

    @property
    def node_url(self) -> str:
        """This node's public signalling base URL (``[cluster] node_url`` or the server's)."""
        return self.cluster.node_url.rstrip("/") or self.server.base_url


def _recorder_limits(section: dict[str, Any]) -> dict[str, Any]:
    """The recorder's retention budget and free-space guard, checked."""
    out: dict[str, Any] = {
        "retention_max_mib": int(section["retention_max_mib"]),
        "retention_unclaimed_days": float(section["retention_unclaimed_days"]),
        "disk_warn_mib": int(section["disk_warn_mib"]),
        "disk_warn_percent": float(section["disk_warn_percent"]),
        "disk_stop_mib": int(section["disk_stop_mib"]),
        "disk_stop_percent": float(section["disk_stop_percent"]),
        "disk_resume_mib": int(section["disk_resume_mib"]),
        "disk_reserve_mib": int(section["disk_reserve_mib"]),
        "disk_check_interval": float(section["disk_check_interval"]),
        "disk_failure_hold": float(section["disk_failure_hold"]),
    }
    for key, value in out.items():
        if value < 0:
            raise ConfigError(f"recorder.{key} must be >= 0")
    for key in ("disk_warn_percent", "disk_stop_percent"):
        if out[key] >= 100:
            raise ConfigError(f"recorder.{key} must be below 100")
    if out["disk_stop_mib"] > out["disk_warn_mib"]:
        raise ConfigError("recorder.disk_stop_mib must not exceed recorder.disk_warn_mib")
    if out["disk_resume_mib"] < out["disk_stop_mib"] + out["disk_reserve_mib"]:
        # Re-allocating the reserve on resume would fall below the stop threshold again.
        raise ConfigError("recorder.disk_resume_mib must be at least disk_stop_mib + "
                          "disk_reserve_mib")
    return out


def _defaults() -> dict[str, dict[str, Any]]:
    text = resources.files("config").joinpath("default.toml").read_text("utf-8")
    return tomllib.loads(text)


def env_name(section: str, key: str) -> str:
    """The environment variable that overrides ``section.key``."""
    return f"{ENV_PREFIX}{section}_{key}".upper()


def default_value(section: str, key: str) -> Any:
    """The embedded default of ``section.key`` (e.g. the demo secrets)."""
    return _defaults()[section][key]


def _coerce(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            try:
                return int(raw)
            except ValueError:
                raise ValueError("expected an integer") from None
        if isinstance(default, float):
            try:
                return float(raw)
            except ValueError:
                raise ValueError("expected a number") from None
        if isinstance(default, list):
            value = json.loads(raw)
            if not isinstance(value, list):
                raise ValueError("expected a JSON list")
            return value
        return raw
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}: {exc}") from None


def _merge(base: dict[str, dict[str, Any]], overlay: Mapping[str, Any], origin: str) -> None:
    for section, values in overlay.items():
        if section not in base or not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: unknown section [{section}]")
        for key, value in values.items():
            if (section, key) in RETIRED_KEYS:
                raise ConfigError(f"{origin}: {section}.{key} was replaced by "
                                  f"{RETIRED_KEYS[section, key]}")
            if key not in base[section]:
                raise ConfigError(f"{origin}: unknown key {section}.{key}")
            expected = _kind(base[section][key])
            if not _is_kind(value, base[section][key]):
                raise ConfigError(f"{origin}: {section}.{key} must be {expected}")
            base[section][key] = value


def _kind(default: Any) -> str:
    for kind, words in ((bool, "true or false"), (int, "an integer"), (float, "a number"),
                        (str, "a string"), (list, "a list")):
        if isinstance(default, kind):
            return words
    return "a table"


def _is_kind(value: Any, default: Any) -> bool:
    """A file value has the default's type (an integer where a number is expected too)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def _check_environment(env: Mapping[str, str], known: set[str]) -> None:
    """Refuse a HUIZHEN_* variable that is neither a setting nor a documented other one."""
    for name in env:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or name in known:
            continue
        if name in NON_SETTING_VARIABLES or name.startswith(TEST_VARIABLE_PREFIX):
            continue
        for (section, key), replacement in RETIRED_KEYS.items():
            if upper == env_name(section, key):
                raise ConfigError(f"environment variable {name}: {section}.{key} was "
                                  f"replaced by {replacement}")
        close = difflib.get_close_matches(upper, sorted(known | NON_SETTING_VARIABLES), n=1,
                                          cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown environment variable {name}{hint}; settings are "
                          f"HUIZHEN_<SECTION>_<KEY> for the keys of config/default.toml")


def _port(section: Mapping[str, Any], name: str) -> int:
    value = section["port"]
    low, high = PORT_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name}.port must be a port number from {low} to {high} "
                          f"(set {env_name(name, 'port')} or [{name}] port)")
    return value


def _ice_servers(raw: Any) -> tuple[IceServer, ...]:
    if not isinstance(raw, list):
        raise ConfigError("ice.servers must be a list")
    servers = []
    for item in raw:
        if not isinstance(item, Mapping) or "urls" not in item:
            raise ConfigError("each ice.servers entry needs 'urls'")
        urls = item["urls"]
        if isinstance(urls, str):
            urls = [urls]
        servers.append(
            IceServer(
                urls=tuple(str(u) for u in urls),
                username=item.get("username"),
                credential=item.get("credential"),
            )
        )
    return tuple(servers)


TURN_SCHEMES = ("turn:", "turns:")
TRANSPORT_POLICIES = ("all", "relay")
LOG_FORMATS = ("text", "json")
MIN_TURN_SECRET = 16


def _turn(ice: Mapping[str, Any]) -> TurnSettings | None:
    urls = tuple(str(u) for u in ice["turn_urls"])
    secret, secret_file = str(ice["turn_secret"]), str(ice["turn_secret_file"])
    if not urls:
        if secret or secret_file:
            raise ConfigError("ice.turn_secret is set but ice.turn_urls is empty")
        return None
    for url in urls:
        if not url.startswith(TURN_SCHEMES):
            raise ConfigError(f"ice.turn_urls: {url!r} is not a turn: or turns: URL")
    if secret and secret_file:
        raise ConfigError("give ice.turn_secret or ice.turn_secret_file, not both")
    if secret_file:
        try:
            secret = Path(secret_file).read_text("utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"ice.turn_secret_file: cannot read {secret_file}: "
                              f"{exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"ice.turn_secret_file: {secret_file} is not UTF-8 text") from None
    if len(secret) < MIN_TURN_SECRET:
        raise ConfigError(f"ice.turn_urls needs a shared secret of at least "
                          f"{MIN_TURN_SECRET} characters (ice.turn_secret or "
                          f"ice.turn_secret_file)")
    ttl = _positive(ice, "ice", "turn_ttl", int)
    return TurnSettings(urls=urls, secret=secret, ttl=ttl)


def _choice(section: Mapping[str, Any], name: str, key: str, choices: tuple[str, ...]) -> str:
    value = str(section[key])
    if value not in choices:
        raise ConfigError(f"{name}.{key} must be " + " or ".join(f'"{c}"' for c in choices))
    return value


def _metrics(raw: Mapping[str, Any]) -> MetricsSettings:
    allow = []
    for item in raw["allow"]:
        try:
            allow.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ConfigError(f"metrics.allow: {item!r} is not an address or network "
                              f"(e.g. 10.20.0.5/32)") from None
    return MetricsSettings(enabled=bool(raw["enabled"]), allow=tuple(allow))


def _tables(raw: Mapping[str, Any], section: str, key: str) -> tuple[dict[str, Any], ...]:
    value = raw[key]
    if not isinstance(value, list) or not all(isinstance(b, Mapping) for b in value):
        raise ConfigError(f"{section}.{key} must be a list of tables")
    return tuple(dict(b) for b in value)


def _devices(raw: Mapping[str, Any]) -> DeviceSettings:
    beds = _tables(raw, "devices", "beds")
    listen = str(raw["hl7_listen"])
    if listen:
        _host, sep, port = listen.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("devices.hl7_listen must be HOST:PORT")
    return DeviceSettings(
        database_url=str(raw["database_url"]),
        hl7_listen=listen,
        hl7_default_zone=str(raw["hl7_default_zone"]),
        beds=beds,
        hl7_max_connections=_at_least(raw, "hl7_max_connections", 1),
        hl7_max_connections_per_address=_at_least(raw, "hl7_max_connections_per_address", 1),
        hl7_first_message_timeout=_positive(raw, "devices", "hl7_first_message_timeout",
                                            float),
        hl7_idle_timeout=_positive(raw, "devices", "hl7_idle_timeout", float),
        hl7_decode_workers=_at_least(raw, "hl7_decode_workers", 0),
    )


def _at_least(raw: Mapping[str, Any], key: str, minimum: int) -> int:
    value = int(raw[key])
    if value < minimum:
        raise ConfigError(f"devices.{key} must be at least {minimum}")
    return value


def _positive(section: Mapping[str, Any], name: str, key: str, kind: type[Any]) -> Any:
    value = kind(section[key])
    if not value > 0:
        raise ConfigError(f"{name}.{key} must be greater than 0")
    return value


def _not_negative(section: Mapping[str, Any], name: str, key: str, kind: type[Any]) -> Any:
    value = kind(section[key])
    if not value >= 0:  # NaN too
        raise ConfigError(f"{name}.{key} must be 0 or more")
    return value


def _vod(raw: Mapping[str, Any]) -> VodSettings:
    nice = int(raw["nice"])
    if not 0 <= nice <= 19:
        raise ConfigError("vod.nice must be between 0 and 19")
    return VodSettings(auto=bool(raw["auto"]),
                       concurrency=_positive(raw, "vod", "concurrency", int), nice=nice,
                       max_auto_minutes=_not_negative(raw, "vod", "max_auto_minutes", float),
                       startup_hours=_not_negative(raw, "vod", "startup_hours", float))


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
NODE_URL_SCHEMES = ("http://", "https://")


def _cluster(raw: Mapping[str, Any]) -> ClusterSettings:
    redis_url, node_url = str(raw["redis_url"]), str(raw["node_url"])
    if redis_url and not redis_url.startswith(REDIS_SCHEMES):
        raise ConfigError("cluster.redis_url must start with redis://, rediss:// or unix://")
    if node_url and not node_url.startswith(NODE_URL_SCHEMES):
        raise ConfigError("cluster.node_url must be an http:// or https:// URL")
    heartbeat = _positive(raw, "cluster", "heartbeat", float)
    node_ttl = _positive(raw, "cluster", "node_ttl", float)
    if node_ttl <= heartbeat:
        raise ConfigError("cluster.node_ttl must be longer than cluster.heartbeat")
    prefix = str(raw["key_prefix"])
    if not prefix:
        raise ConfigError("cluster.key_prefix must not be empty")
    return ClusterSettings(redis_url=redis_url, node_url=node_url, key_prefix=prefix,
                           heartbeat=heartbeat, node_ttl=node_ttl,
                           busy_cpu=_positive(raw, "cluster", "busy_cpu", float),
                           cascade=bool(raw["cascade"]))


def _signaling(raw: Mapping[str, Any]) -> SignalingSettings:
    quotas = {key: int(raw[key]) for key in
              ("sockets_per_token", "peer_connections_per_token", "sockets_per_address")}
    if any(v < 0 for v in quotas.values()):
        raise ConfigError("signaling quotas must be 0 (unlimited) or more")
    return SignalingSettings(
        join_timeout=_positive(raw, "signaling", "join_timeout", float),
        messages_per_second=_positive(raw, "signaling", "messages_per_second", float),
        message_burst=_positive(raw, "signaling", "message_burst", int),
        outgoing_queue=_positive(raw, "signaling", "outgoing_queue", int),
        **quotas,
    )


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from defaults, then ``path`` (or $HUIZHEN_CONFIG), then the environment."""
    env = os.environ if environ is None else environ
    merged = _defaults()
    file_path = path if path is not None else env.get(ENV_PREFIX + "CONFIG")
    if file_path:
        try:
            overlay = tomllib.loads(Path(file_path).read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {file_path}: {exc}") from None
        _merge(merged, overlay, str(file_path))
    _check_environment(env, {env_name(section, key) for section, values in merged.items()
                             for key in values})
    for section, values in merged.items():
        for key, default in list(values.items()):
            name = env_name(section, key)
            if name in env:
                values[key] = _coerce(name, env[name], default)
    try:
        s, a, m = merged["server"], merged["auth"], merged["media"]
        return Settings(
            server=ServerSettings(
                host=str(s["host"]),
                port=_port(s, "server"),
                public_url=str(s["public_url"]),
                max_message_bytes=int(s["max_message_bytes"]),
            ),
            auth=AuthSettings(
                token_secret=str(a["token_secret"]),
                issuer=str(a["issuer"]),
                audience=str(a["audience"]),
                default_ttl=int(a["default_ttl"]),
            ),
            media=MediaSettings(
                ice_addresses=tuple(str(x) for x in m["ice_addresses"]),
                keyframe_interval=float(m["keyframe_interval"]),
                retransmission_buffer=int(m["retransmission_buffer"]),
                room_publishers=_positive(m, "media", "room_publishers", int),
                room_viewers=_positive(m, "media", "room_viewers", int),
                setup_concurrency=_not_negative(m, "media", "setup_concurrency", int),
                admit_cpu=_not_negative(m, "media", "admit_cpu", float),
                publications_per_participant=_positive(
                    m, "media", "publications_per_participant", int),
                subscriptions_per_participant=_positive(
                    m, "media", "subscriptions_per_participant", int),
                pending_per_participant=_positive(m, "media", "pending_per_participant", int),
                answer_timeout=_positive(m, "media", "answer_timeout", float),
                connect_timeout=_positive(m, "media", "connect_timeout", float),
                empty_room_grace=_not_negative(m, "media", "empty_room_grace", float),
                simulcast=bool(m.get("simulcast", False)),
            ),
            signaling=_signaling(merged["signaling"]),
            storage=StorageSettings(data_dir=Path(str(merged["storage"]["data_dir"]))),
            devices=_devices(merged["devices"]),
            records=RecordsSettings(
                host=str(merged["records"]["host"]),
                port=_port(merged["records"], "records"),
                database_url=str(merged["records"]["database_url"]),
                token_secret=str(merged["records"]["token_secret"]),
                max_upload_bytes=int(merged["records"]["max_upload_bytes"]),
                webhooks=_tables(merged["records"], "records", "webhooks"),
                secure_cookies=bool(merged["records"]["secure_cookies"]),
                public_url=str(merged["records"]["public_url"]),
                media_url=str(merged["records"]["media_url"]),
            ),
            recorder=RecorderSettings(
                enabled=bool(merged["recorder"]["enabled"]),
                directory=str(merged["recorder"]["directory"]),
                handoff_url=str(merged["recorder"]["handoff_url"]),
                handoff_token=str(merged["recorder"]["handoff_token"]),
                retention_days=int(merged["recorder"]["retention_days"]),
                **_recorder_limits(merged["recorder"]),
            ),
            ice_servers=_ice_servers(merged["ice"]["servers"]),
            turn=_turn(merged["ice"]),
            ice_transport_policy=_choice(merged["ice"], "ice", "transport_policy",
                                         TRANSPORT_POLICIES),
            metrics=_metrics(merged["metrics"]),
            logging=LoggingSettings(format=_choice(merged["logging"], "logging", "format",
                                                   LOG_FORMATS)),
            vod=_vod(merged["vod"]),
            cluster=_cluster(merged["cluster"]),
        )
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid configuration value: {exc}") from None
