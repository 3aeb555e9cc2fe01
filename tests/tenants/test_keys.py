"""API key format (the documented wire format): ``dpp_live_<32 base62>_<8 checksum>``, HMAC at rest.

The checksum is recomputed here from the documented format, independently of tenants/keys.py.
"""

import hashlib
import hmac
import string

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tenants import keys

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
random_parts = st.text(alphabet=BASE62, min_size=32, max_size=32)


def design_checksum(body: str) -> str:
    """First 5 bytes of SHA-256 of ``dpp_live_<random>``, as base62 left-padded with 0 to 8."""
    number = int.from_bytes(hashlib.sha256(body.encode()).digest()[:5], "big")
    digits = ""
    while number:
        number, remainder = divmod(number, 62)
        digits = BASE62[remainder] + digits
    return digits.rjust(8, "0")


def design_key(random_part: str) -> str:
    return f"dpp_live_{random_part}_{design_checksum('dpp_live_' + random_part)}"


def base62_decode(text: str) -> int:
    number = 0
    for char in text:
        number = number * 62 + BASE62.index(char)
    return number


class TestApiKeyGenerate:
    def test_has_the_documented_length_prefix_alphabet_and_checksum(self):
        key = keys.generate()

        assert len(key) == len("dpp_live_") + 32 + 1 + 8 == 50
        assert key.startswith("dpp_live_") and key[41] == "_"
        random_part, checksum = key[9:41], key[42:]
        assert set(random_part) <= set(BASE62) and set(checksum) <= set(BASE62)
        assert checksum == design_checksum(f"dpp_live_{random_part}")

    def test_matches_a_worked_example(self):
        random_part = "0123456789ABCDEFGHIJabcdefghijXY"
        digest = hashlib.sha256(b"dpp_live_0123456789ABCDEFGHIJabcdefghijXY").digest()

        expected_number = int.from_bytes(digest[:5], "big")

        assert keys.checksum(f"dpp_live_{random_part}") == design_checksum(f"dpp_live_{random_part}")
        assert base62_decode(keys.checksum(f"dpp_live_{random_part}")) == expected_number

    def test_draws_fresh_randomness_every_time(self):
        assert len({keys.generate() for _ in range(500)}) == 500


class TestApiKeyParse:
    @given(st.integers(min_value=0, max_value=10**6))
    def test_round_trips_every_generated_key(self, _):
        key = keys.generate()

        parsed = keys.parse(key)

        assert (parsed.raw, parsed.random_part, parsed.checksum) == (key, key[9:41], key[42:])

    @given(random_parts)
    def test_accepts_any_key_built_as_the_design_says(self, random_part):
        assert keys.parse(design_key(random_part)).random_part == random_part

    @given(random_parts, st.data())
    def test_refuses_any_single_character_change(self, random_part, data):
        key = design_key(random_part)
        position = data.draw(st.integers(min_value=0, max_value=len(key) - 1), label="position")
        replacement = data.draw(st.sampled_from(BASE62 + "_-+/= .é\x00"), label="replacement")
        mutated = key[:position] + replacement + key[position + 1:]
        assume(mutated != key)

        with pytest.raises(keys.InvalidKeyFormat):
            keys.parse(mutated)

    @given(random_parts, st.data())
    def test_refuses_a_dropped_or_doubled_character(self, random_part, data):
        key = design_key(random_part)
        position = data.draw(st.integers(min_value=0, max_value=len(key) - 1), label="position")

        with pytest.raises(keys.InvalidKeyFormat):
            keys.parse(key[:position] + key[position + 1:])
        with pytest.raises(keys.InvalidKeyFormat):
            keys.parse(key[:position] + key[position] + key[position:])

    def test_refuses_a_key_with_a_wrong_checksum(self):
        key = keys.generate()
        wrong = key[:-1] + ("0" if key[-1] != "0" else "1")

        with pytest.raises(keys.InvalidKeyFormat):
            keys.parse(wrong)

    @pytest.mark.parametrize("bad", [
        "", "dpp_live_", "Bearer x", None, 42, b"dpp_live_",
        "dpp_test_" + "a" * 32 + "_" + "0" * 8,
        "dpp_live_" + "a" * 31 + "_" + "0" * 9,
        " " + keys.generate()[1:],
    ])
    def test_refuses_strings_of_the_wrong_shape(self, bad):
        with pytest.raises(keys.InvalidKeyFormat):
            keys.parse(bad)


class TestBase62Encode:
    @given(st.integers(min_value=0, max_value=2**40 - 1), st.integers(min_value=0, max_value=2**40 - 1))
    def test_is_injective_and_ordered_once_padded(self, a, b):
        encoded_a, encoded_b = keys.base62_encode(a).rjust(8, "0"), keys.base62_encode(b).rjust(8, "0")

        assert (encoded_a == encoded_b) == (a == b)
        assert (encoded_a < encoded_b) == (a < b)

    @given(st.integers(min_value=0, max_value=2**128))
    def test_decodes_back_to_the_number(self, number):
        assert base62_decode(keys.base62_encode(number)) == number

    def test_every_five_byte_checksum_fits_in_eight_characters(self):
        assert len(keys.base62_encode(2**40 - 1)) == 7
        assert keys.checksum("dpp_live_") == design_checksum("dpp_live_")

    def test_refuses_negative_numbers(self):
        with pytest.raises(ValueError):
            keys.base62_encode(-1)


class TestHashKey:
    @given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
    def test_depends_on_the_pepper(self, pepper_a, pepper_b):
        assume(pepper_a != pepper_b)
        key = design_key("A" * 32)

        assert keys.hash_key(key, pepper=pepper_a) != keys.hash_key(key, pepper=pepper_b)

    def test_is_the_hmac_sha256_of_the_whole_key_in_hex(self):
        key = keys.generate()

        expected = hmac.new(b"pepper", key.encode(), hashlib.sha256).hexdigest()

        assert keys.hash_key(key, pepper="pepper") == expected
        assert len(expected) == 64
