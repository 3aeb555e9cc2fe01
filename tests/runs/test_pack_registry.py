"""Packs are loaded from settings.DPP_PACKS: operators add theirs by dotted path; tests add the
test-only packs of tests/packs.py the same way. No database needed."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from runs.packs import PackExecutionError, pack_get, packs_all
from runs.packs.decision import DecisionPack
from tests.packs import EchoPack, SlowPack

TEST_PACKS = ["runs.packs.decision.DecisionPack", "tests.packs.SlowPack", "tests.packs.EchoPack"]


class TestPackRegistry:
    def test_registers_the_decision_pack_by_default(self):
        assert isinstance(pack_get("decision"), DecisionPack)
        assert [pack.pack_type for pack in packs_all()] == ["decision"]
        assert pack_get("nope") is None

    def test_loads_the_packs_named_by_the_setting_in_pack_type_order(self):
        with override_settings(DPP_PACKS=TEST_PACKS):
            assert [pack.pack_type for pack in packs_all()] == ["decision", "test_echo", "test_slow"]
            assert isinstance(pack_get("test_slow"), SlowPack)
            assert isinstance(pack_get("test_echo"), EchoPack)

    def test_follows_the_setting_back_when_it_is_restored(self):
        with override_settings(DPP_PACKS=TEST_PACKS):
            assert pack_get("test_echo") is not None

        assert pack_get("test_echo") is None
        assert isinstance(pack_get("decision"), DecisionPack)

    def test_keeps_one_instance_per_pack_type(self):
        assert pack_get("decision") is pack_get("decision")

    @pytest.mark.parametrize("packs", [
        pytest.param(["runs.packs.nowhere.Pack"], id="unknown module"),
        pytest.param(["runs.packs.decision.NoSuchPack"], id="unknown class"),
        pytest.param(["tests.packs.EchoPack", "tests.packs.EchoPack"], id="duplicate pack type"),
    ])
    def test_an_unknown_path_or_a_duplicate_type_is_a_configuration_error(self, packs):
        with override_settings(DPP_PACKS=packs), pytest.raises(ImproperlyConfigured):
            packs_all()


class TestTestPacks:
    def test_the_slow_pack_quotes_its_cost_and_at_least_one_micro(self):
        pack = SlowPack()

        assert pack.quote_micros(pack.validate({"seconds": 0})) == 1000
        assert pack.quote_micros(pack.validate({"seconds": 0, "cost_micros": 2500})) == 2500
        assert pack.quote_micros(pack.validate({"seconds": 0, "cost_micros": 0})) == 1

    def test_the_slow_pack_runs_and_fails_on_request(self):
        pack = SlowPack()

        assert pack.execute({"seconds": 0.01, "cost_micros": 700}, timebox_sec=5).actual_cost_micros == 700
        with pytest.raises(PackExecutionError) as error:
            pack.execute({"seconds": 0, "fail": True}, timebox_sec=5)
        assert error.value.reason_code == "PACK_FAILED"

    def test_the_echo_pack_returns_its_inputs_for_1000_micros(self):
        result = EchoPack().execute({"a": [1, 2]}, timebox_sec=5)

        assert result.data == {"echo": {"a": [1, 2]}} and result.actual_cost_micros == 1000
