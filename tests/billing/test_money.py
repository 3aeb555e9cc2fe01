"""Money at the boundary: 4-decimal strings <-> integer micros, never a float."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.money import MAX_AMOUNT_MICROS, MoneyFormatError, micros_to_usd, minimum_fee_micros, usd_to_micros


class TestUsdToMicros:
    @pytest.mark.parametrize(
        ("text", "micros"),
        [("0.5000", 500_000), ("0.005", 5_000), ("1", 1_000_000), ("0.0001", 100), ("10000", 10_000_000_000),
         ("10000.0000", 10_000_000_000), ("0", 0), ("12.3", 12_300_000)],
    )
    def test_parses_decimal_strings_exactly(self, text, micros):
        assert usd_to_micros(text) == micros

    @pytest.mark.parametrize(
        "bad",
        ["0.00001", "-1", "+1", "1e3", "1E-2", "NaN", "nan", "inf", "", " ", " 1", "1 ", "1.", ".5", "01",
         "10000.0001", "99999", "1,5", "0x10", "١", "1_000", 0.5, 1, True, None, [], {}],
    )
    def test_refuses_anything_but_a_plain_decimal_string(self, bad):
        with pytest.raises(MoneyFormatError):
            usd_to_micros(bad)


class TestMicrosToUsd:
    def test_formats_with_four_decimals(self):
        assert micros_to_usd(500_000) == "0.5000"
        assert micros_to_usd(0) == "0.0000"
        assert micros_to_usd(10_000_000_000) == "10000.0000"

    def test_rounds_sub_hundred_micros_half_up_for_display_only(self):
        assert micros_to_usd(10_246) == "0.0102"
        assert micros_to_usd(10_250) == "0.0103"

    def test_refuses_floats(self):
        with pytest.raises(TypeError):
            micros_to_usd(0.5)

    @given(st.integers(min_value=0, max_value=MAX_AMOUNT_MICROS // 100))
    def test_round_trips_every_four_decimal_amount(self, hundreds):
        micros = hundreds * 100
        text = micros_to_usd(micros)
        assert isinstance(text, str)
        assert usd_to_micros(text) == micros


class TestMinimumFee:
    @pytest.mark.parametrize(
        ("reserved", "fee"),
        [
            (5_000, 5_000),  # the floor equals the reservation
            (50_000, 5_000),  # 2% = 1_000 < floor 5_000
            (500_000, 10_000),  # 2% of $0.50
            (512_300, 10_246),  # 1_024_600 // 100 exactly, no rounding up
            (10_000_000, 100_000),  # 2% = 200_000, capped at $0.10
            (4_000, 4_000),  # never above the reservation
        ],
    )
    def test_follows_the_design_formula_in_integers(self, reserved, fee):
        assert minimum_fee_micros(reserved) == fee

    @given(st.integers(min_value=1, max_value=MAX_AMOUNT_MICROS))
    def test_is_never_above_the_reservation_nor_the_cap(self, reserved):
        fee = minimum_fee_micros(reserved)
        assert isinstance(fee, int)
        assert 0 < fee <= min(reserved, 100_000)
