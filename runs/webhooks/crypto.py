"""Webhook signing secrets: generation and encryption at rest.

A secret is ``whsec_`` + base64 of 32 random bytes (Standard Webhooks). At rest it is a Fernet
token under a key derived (HKDF-SHA256) from DPP_WEBHOOK_ENCRYPTION_KEY; several comma-separated
keys may be configured: the first encrypts, all decrypt. Secrets are never logged.
"""

from __future__ import annotations

import base64
import secrets
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

SECRET_PREFIX = "whsec_"


class SecretDecryptionFailed(Exception):
    """The stored secret cannot be read with the configured keys (wrong or dropped key)."""


def secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part after ``whsec_``."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)


def _derive(material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dpp webhook secrets v1").derive(
        material.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


@lru_cache(maxsize=4)
def _fernet(configured: str) -> MultiFernet:
    keys = [item.strip() for item in configured.split(",") if item.strip()]
    return MultiFernet([_derive(item) for item in keys])


def secret_encrypt(secret: str) -> str:
    return _fernet(settings.DPP_WEBHOOK_ENCRYPTION_KEY).encrypt(secret.encode("utf-8")).decode("ascii")


def secret_decrypt(token: str) -> str:
    try:
        return _fernet(settings.DPP_WEBHOOK_ENCRYPTION_KEY).decrypt(token.encode("ascii")).decode("utf-8")
    except InvalidToken:
        raise SecretDecryptionFailed("the webhook secret cannot be decrypted with DPP_WEBHOOK_ENCRYPTION_KEY") from None
