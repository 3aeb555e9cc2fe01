"""Which pack types a plan may list in ``allowed_pack_types``.

Packs live in ``runs`` (above ``tenants`` in the layering), so ``runs`` tells this module where
its registry is when it loads (``runs.apps.RunsConfig.ready``). Until then no name is registered,
and every non-wildcard name is refused: the check fails closed.

A plan's ``allowed_pack_types`` is a JSON list of registered pack type names, or exactly ``["*"]``
(every registered pack). Anything else (a string, an object, a name no pack has) is refused when
written through the admin or ``full_clean``; the database refuses anything but an array; and
``Plan.allows_pack`` allows nothing for a value it cannot read (an empty list allows nothing).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from django.core.exceptions import ValidationError

ALL_PACKS = "*"

_registered: Callable[[], Iterable[str]] | None = None


def pack_types_source_set(source: Callable[[], Iterable[str]]) -> None:
    global _registered
    _registered = source


def pack_types_registered() -> frozenset[str]:
    return frozenset(_registered()) if _registered is not None else frozenset()


def allowed_pack_types_validate(value) -> None:
    """A model field validator: ``value`` is ``["*"]`` or a list of registered pack types."""
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValidationError('Give a JSON list of pack type names, e.g. ["decision"], or ["*"] for every pack.',
                              code="invalid_pack_types")
    if ALL_PACKS in value:
        if value != [ALL_PACKS]:
            raise ValidationError('"*" means every pack: list it alone.', code="invalid_pack_types")
        return
    if len(set(value)) != len(value):
        raise ValidationError("A pack type is listed twice.", code="invalid_pack_types")
    unknown = sorted(set(value) - pack_types_registered())
    if unknown:
        raise ValidationError("Not a registered pack type: %(names)s.", code="invalid_pack_types",
                              params={"names": ", ".join(name[:64] for name in unknown[:5])})


def allowed_pack_types_allows(value, pack_type: str) -> bool:
    """Fails closed: only a list naming ``pack_type`` (or ``["*"]``) allows it."""
    if not isinstance(value, list):
        return False
    return value == [ALL_PACKS] or pack_type in [name for name in value if isinstance(name, str)]
