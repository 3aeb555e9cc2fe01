"""dpp.serializers.OutputSerializer: shallow field copies must behave as DRF's deep copies."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from rest_framework import serializers

from dpp.serializers import OutputSerializer


class Inner(OutputSerializer):
    label = serializers.SerializerMethodField()

    def get_label(self, obj) -> str:
        return f"{self.context['prefix']}-{obj['value']}"


class Item(OutputSerializer):
    value = serializers.IntegerField()


class Outer(OutputSerializer):
    value = serializers.IntegerField()
    inner = Inner(source="*")
    items = Item(many=True)


def _render(prefix: str, value: int) -> dict:
    return Outer({"value": value, "items": [{"value": value}]}, context={"prefix": prefix}).data


def test_a_nested_output_reads_the_context_of_its_own_root():
    assert _render("a", 1) == {"value": 1, "inner": {"label": "a-1"}, "items": [{"value": 1}]}
    assert _render("b", 2) == {"value": 2, "inner": {"label": "b-2"}, "items": [{"value": 2}]}


def test_the_declared_fields_are_never_bound():
    _render("a", 1)
    for declared in Outer._declared_fields.values():
        assert getattr(declared, "field_name", None) is None
        assert "fields" not in declared.__dict__
        assert getattr(declared, "parent", None) is None


def test_concurrent_renders_do_not_mix_contexts():
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda n: (n, _render(f"p{n}", n)), range(400)))
    for n, data in results:
        assert data == {"value": n, "inner": {"label": f"p{n}-{n}"}, "items": [{"value": n}]}


def test_unknown_input_fields_are_named_at_most_five_and_cut_short():
    from dpp.serializers import StrictFieldsMixin

    class Input(StrictFieldsMixin, serializers.Serializer):
        name = serializers.CharField()

    body = Input(data={"name": "x", **{f"{index:02d}" + "k" * 500: 1 for index in range(20)}})
    assert not body.is_valid()
    assert len(body.errors) == 5 and all(len(key) == 64 for key in body.errors)
