"""Configuration: a TOML file with embedded defaults, every key overridable by environment."""

from config.settings import (
    AuthSettings,
    ConfigError,
    DeviceSettings,
    IceServer,
    MediaSettings,
    RecorderSettings,
    RecordsSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    load_settings,
)

__all__ = [
    "AuthSettings",
    "ConfigError",
    "DeviceSettings",
    "IceServer",
    "MediaSettings",
    "RecorderSettings",
    "RecordsSettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "load_settings",
]
