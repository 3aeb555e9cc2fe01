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
