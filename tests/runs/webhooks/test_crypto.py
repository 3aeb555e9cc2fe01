"""Secrets: whsec_ + base64 of 32 random bytes; encrypted at rest; several keys decrypt."""

from __future__ import annotations

import base64

import pytest

from runs.webhooks import crypto


class TestSecretGenerate:
    def test_is_whsec_and_base64_of_32_bytes(self):
        secret = crypto.secret_generate()

        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
        assert crypto.secret_generate() != secret


class TestSecretEncrypt:
    def test_round_trips_and_the_token_does_not_contain_the_secret(self, settings):
        secret = crypto.secret_generate()

        token = crypto.secret_encrypt(secret)

        assert secret not in token and secret.removeprefix("whsec_") not in token
        assert crypto.secret_decrypt(token) == secret

    def test_a_new_first_key_still_decrypts_what_the_old_key_encrypted(self, settings):
        settings.DPP_WEBHOOK_ENCRYPTION_KEY = "old-key"
        token = crypto.secret_encrypt("whsec_AAAA")
        settings.DPP_WEBHOOK_ENCRYPTION_KEY = "new-key,old-key"

        assert crypto.secret_decrypt(token) == "whsec_AAAA"
        assert crypto.secret_decrypt(crypto.secret_encrypt("whsec_BBBB")) == "whsec_BBBB"

    def test_a_wrong_key_fails_loudly(self, settings):
        settings.DPP_WEBHOOK_ENCRYPTION_KEY = "one"
        token = crypto.secret_encrypt("whsec_AAAA")
        settings.DPP_WEBHOOK_ENCRYPTION_KEY = "another"

        with pytest.raises(crypto.SecretDecryptionFailed):
            crypto.secret_decrypt(token)
