"""Configuration: a TOML file with embedded defaults, every key overridable by environment."""

from config.settings import (
    AuthSettings,
    ConfigError,
    IceServer,
    MediaSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    load_settings,
)

__all__ = [
    "AuthSettings",
    "ConfigError",
    "IceServer",
    "MediaSettings",
    "ServerSettings",
    "Settings",
    "StorageSettings",
    "load_settings",
]
