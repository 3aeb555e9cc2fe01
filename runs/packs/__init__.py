"""The pack registry: pack types by name, loaded from settings.DPP_PACKS (dotted class paths).

Operators add a pack by appending its class path to DPP_PACKS; tests add test-only packs the
same way.
"""

from __future__ import annotations

from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from runs.packs.base import Pack, PackExecutionError, PackInputError, PackResult

__all__ = ["Pack", "PackExecutionError", "PackInputError", "PackResult", "pack_get", "packs_all"]


@lru_cache(maxsize=1)
def _registry() -> dict[str, Pack]:
    registry: dict[str, Pack] = {}
    for path in settings.DPP_PACKS:
        try:
            pack_class = import_string(path)
        except ImportError as error:
            raise ImproperlyConfigured(f"DPP_PACKS: cannot import {path!r}: {error}") from error
        pack = pack_class()
        if pack.pack_type in registry:
            raise ImproperlyConfigured(f"DPP_PACKS: pack type {pack.pack_type!r} registered twice")
        registry[pack.pack_type] = pack
    return registry


def pack_get(pack_type: str) -> Pack | None:
    return _registry().get(pack_type)


def packs_all() -> list[Pack]:
    return [pack for _, pack in sorted(_registry().items())]


def _reset(*, setting, **kwargs):
    if setting == "DPP_PACKS":
        _registry.cache_clear()


setting_changed.connect(_reset)
