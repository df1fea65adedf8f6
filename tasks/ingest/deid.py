"""What may leave ingestion: keyed pseudonyms (HMAC-SHA256) and an allowlist of acquisition facts.

Nothing from a DICOM header reaches the dataset unless it is listed here and passes its check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re

KEY_ENV = "MEDFLOW_PSEUDONYM_KEY"
KEY_BLOCK = "medflow-pseudonym-key"
MIN_KEY_LENGTH = 16


class PseudonymKeyError(RuntimeError):
    """No usable pseudonymisation key was configured."""


def load_pseudonym_key() -> bytes:
    """The secret key from ``MEDFLOW_PSEUDONYM_KEY`` or the Prefect Secret block ``medflow-pseudonym-key``."""
    value = os.environ.get(KEY_ENV)
    if not value:
        value = _key_from_prefect_block()
    if not value:
        raise PseudonymKeyError(
            f"no pseudonymisation key: set {KEY_ENV} (at least {MIN_KEY_LENGTH} characters) "
            f"or create a Prefect Secret block named '{KEY_BLOCK}'"
        )
    if len(value) < MIN_KEY_LENGTH:
        raise PseudonymKeyError(f"{KEY_ENV} must be at least {MIN_KEY_LENGTH} characters long")
    return value.encode()


def _key_from_prefect_block() -> str | None:
    if os.environ.get("MEDFLOW_NO_PREFECT_SECRET"):
        return None
    try:
        from prefect.blocks.system import Secret

        return Secret.load(KEY_BLOCK, _sync=True).get()
    except Exception:  # no server, no block: the caller reports a missing key
        return None


def pseudonym(key: bytes, kind: str, value: str) -> str:
    """A keyed pseudonym: hex HMAC-SHA256 of ``kind:value`` truncated to 128 bits."""
    digest = hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()
    return digest[:32]


_MODALITY = re.compile(r"^[A-Z0-9]{1,8}$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
PHOTOMETRIC_VALUES = frozenset(
    {"MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422",
     "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"}
)


def safe_modality(value: object) -> str:
    """Modality (0008,0060) when it is a plain code string, else ``OT``."""
    text = str(value or "").strip().upper()
    return text if _MODALITY.match(text) else "OT"


def safe_photometric(value: object) -> str:
    """Photometric Interpretation (0028,0004) from the standard's defined terms, else ``UNKNOWN``."""
    text = str(value or "").strip().upper()
    return text if text in PHOTOMETRIC_VALUES else "UNKNOWN"


def safe_transfer_syntax(value: object) -> str:
    """Transfer Syntax UID when it is a syntactically valid UID (standard syntaxes only carry no PHI)."""
    text = str(value or "").strip()
    return text if _UID.match(text) and text.startswith("1.2.840.10008.") else "unknown"
