"""API key format (DESIGN section 6): dpp_live_<32 base62>_<8 checksum>, HMAC at rest."""

import hashlib
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenants import keys

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def independent_checksum(body: str) -> str:
    """The checksum computed from the design's words, independently of tenants/keys.py."""
    number = int.from_bytes(hashlib.sha256(body.encode()).digest()[:5], "big")
    digits = ""
    while number:
        number, remainder = divmod(number, 62)
        digits = BASE62[remainder] + digits
    return (digits or "0").rjust(8, "0")


class TestApiKeyGenerate:
    def test_has_the_documented_shape(self):
        key = keys.generate()
        assert key.startswith("dpp_live_") and len(key) == 9 + 32 + 1 + 8
        random_part, checksum = key[9:41], key[42:]
        assert key[41] == "_"
        assert set(random_part) <= set(BASE62) and set(checksum) <= set(BASE62)
        assert checksum == independent_checksum(f"dpp_live_{random_part}")

    def test_keys_are_unique(self):
        assert len({keys.generate() for _ in range(500)}) == 500


class TestApiKeyParse:
    @given(st.integers(min_value=0, max_value=10_000))
    def test_round_trips_every_generated_key(self, _):
        key = keys.generate()
        assert keys.parse(key).raw == key

    @given(st.data())
    def test_refuses_any_single_character_change(self, data):
        key = keys.generate()
        position = data.draw(st.integers(min_value=0, max_value=len(key) - 1))
        replacement = data.draw(st.sampled_from(BASE62 + "_-"))
        mutated = key[:position] + replacement + key[position + 1:]
        if mutated == key:
            return
        with pytest.raises(keys.InvalidKeyFormat):
            keys.parse(mutated)

    @pytest.mark.parametrize("bad", ["", "dpp_live_", "Bearer x", "dpp_test_" + "a" * 32 + "_" + "0" * 8,
                                     "dpp_live_" + "a" * 31 + "_" + "0" * 8, None, 42])
    def test_refuses_malformed_strings(self, bad):
        with pytest.raises(keys.InvalidKeyFormat):
            keys.parse(bad)

    def test_refuses_a_key_with_a_wrong_checksum(self):
        key = keys.generate()
        wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
        with pytest.raises(keys.InvalidKeyFormat):
            keys.parse(wrong)


class TestBase62:
    @given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=2**40))
    def test_is_injective_and_preserves_order_at_equal_length(self, a, b):
        ea, eb = keys.base62_encode(a).rjust(8, "0"), keys.base62_encode(b).rjust(8, "0")
        assert (ea == eb) == (a == b)
        assert (ea < eb) == (a < b)


class TestHashKey:
    def test_depends_on_the_pepper(self):
        key = keys.generate()
        assert keys.hash_key(key, pepper="a") != keys.hash_key(key, pepper="b")
        assert keys.hash_key(key, pepper="a") == keys.hash_key(key, pepper="a")
        assert len(keys.hash_key(key, pepper="a")) == 64
