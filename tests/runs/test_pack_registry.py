"""Packs are loaded from settings.DPP_PACKS: operators add theirs by dotted path."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from runs.packs import pack_get, packs_all
from runs.packs.decision import DecisionPack


def test_the_decision_pack_is_registered_by_default():
    assert isinstance(pack_get("decision"), DecisionPack)
    assert pack_get("nope") is None


def test_packs_are_added_through_the_setting():
    with override_settings(DPP_PACKS=["runs.packs.decision.DecisionPack", "tests.packs.EchoPack"]):
        assert [pack.pack_type for pack in packs_all()] == ["decision", "test_echo"]
    assert pack_get("test_echo") is None  # the registry follows the setting back


@pytest.mark.parametrize("packs", [["runs.packs.nowhere.Pack"], ["tests.packs.EchoPack", "tests.packs.EchoPack"]])
def test_an_unknown_path_or_a_duplicate_type_is_a_configuration_error(packs):
    with override_settings(DPP_PACKS=packs), pytest.raises(ImproperlyConfigured):
        packs_all()
