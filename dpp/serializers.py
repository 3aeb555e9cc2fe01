"""Serializer bases shared by the apps."""

from __future__ import annotations

import copy

from rest_framework import serializers


class OutputSerializer(serializers.Serializer):
    """A serializer that only renders (never validates): its fields are shallow copies of the
    class's declared fields, where DRF deep-copies every field, with its arguments, for every
    instance (more CPU than rendering the run itself on the detail GET). Each copy is bound to
    this instance as usual; a nested serializer builds its own copies, bound to its copy, so
    the context still comes from the root. A list field (``many=True``) is deep-copied as DRF
    does: its child is bound to it."""

    def get_fields(self):
        fields = {}
        for name, declared in self._declared_fields.items():
            if isinstance(declared, serializers.ListSerializer):
                fields[name] = copy.deepcopy(declared)
                continue
            field = copy.copy(declared)
            field.__dict__.pop("fields", None)  # a nested serializer's fields belong to its copy
            fields[name] = field
        return fields


class StrictFieldsMixin:
    """Input serializers refuse unknown fields (a 422 naming them) instead of silently dropping
    them, nested serializers too. At most 5 are named, each cut to 64 characters: the keys are
    the client's input."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name[:64]: ["Unknown field."] for name in unknown[:5]})
        return super().to_internal_value(data)
