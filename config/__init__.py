"""Configuration: a TOML file with embedded defaults, every key overridable by environment."""

from config.settings import (
    AuthSettings,
    ClusterSettings,
    ConfigError,
    DeviceSettings,
    IceServer,
    LoggingSettings,
    MediaSettings,
    MetricsSettings,
    RecorderSettings,
    RecordsSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    TurnSettings,
    load_settings,
)

__all__ = [
    "AuthSettings",
    "ClusterSettings",
    "ConfigError",
    "DeviceSettings",
    "IceServer",
    "LoggingSettings",
    "MediaSettings",
    "MetricsSettings",
    "RecorderSettings",
    "RecordsSettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "TurnSettings",
    "load_settings",
]
