"""Signed bundles: an Ed25519 signature over the canonical manifest, and the device's trust.

The manifest already holds the sha256 of every file of a bundle and its own integrity hash, so
a signature over the manifest covers the whole bundle. The signature is *detached*: it lives
in ``manifest.sig`` next to ``manifest.json`` (written after the manifest, never listed in it)
as JSON ``{"schema", "algorithm": "ed25519", "key_id", "signature"}`` (base64).

What each layer catches (docs/trust.md): the hashes catch accidental damage and an edit that
was not re-hashed; the signature catches any edit by someone without the operator's private
key — re-hashed threshold edits included — once the device is told whom to trust
(``--trust PUBKEY``, or :data:`TRUST_ENV`).  Without a trusted key nothing is refused for
being unsigned, and ``check`` says whether a bundle is signed.

Ed25519 via PyCA ``cryptography``: the maintained reference binding for Python (OpenSSL
underneath, wheels for x86-64 and aarch64 incl. manylinux_2_28 for JetPack 6), no custom
crypto here.  PEM files: PKCS#8 private key (written 0600), SubjectPublicKeyInfo public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mtlsi_edge.errors import BundleError, ConfigError, MtlsiError
from mtlsi_edge.fileio import atomic_write_bytes, atomic_write_json

SIGNATURE_FILE = "manifest.sig"
SIGNATURE_SCHEMA = "mtlsi-edge/signature@1"
#: Environment variable naming trusted public keys for devices: PEM files or folders of
#: ``*.pem`` files, separated by ``os.pathsep``.
TRUST_ENV = "MTLSI_EDGE_TRUST"


class SignatureError(MtlsiError, ValueError):
    """A bundle refused by the signature check (exit 3, like a failed self-check)."""

    exit_code = 3


def canonical_bytes(manifest: dict) -> bytes:
    """The bytes that are signed: the manifest as sorted, compact, ASCII JSON (every field,
    its integrity hash included)."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def _crypto():
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return serialization, ed25519, InvalidSignature


def key_id(public_key) -> str:
    """Short fingerprint of a public key: sha256 of its raw 32 bytes, first 16 hex digits."""
    serialization, _, _ = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def new_key_pair(out_dir: str | Path, name: str = "mtlsi-edge",
                 overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``NAME.key`` (private, PKCS#8 PEM, mode 0600) and ``NAME.pub`` (public PEM) in
    ``out_dir``; refuses to replace existing files unless ``overwrite``."""
    serialization, ed25519, _ = _crypto()
    out = Path(out_dir)
    priv, pub = out / f"{name}.key", out / f"{name}.pub"
    for p in (priv, pub):
        if p.exists() and not overwrite:
            raise ConfigError(f"{p}: exists; refusing to replace a key (pass --overwrite, or "
                              f"choose another --name)")
    out.mkdir(parents=True, exist_ok=True)
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    old = os.umask(0o077)  # the private key is never readable by others, not even briefly
    try:
        atomic_write_bytes(priv, pem)
        os.chmod(priv, 0o600)
    finally:
        os.umask(old)
    atomic_write_bytes(pub, key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def load_private_key(path: str | Path):
    """An Ed25519 private key from a PEM file; one-line errors."""
    serialization, ed25519, _ = _crypto()
    p = Path(path)
    try:
        key = serialization.load_pem_private_key(p.read_bytes(), password=None)
    except FileNotFoundError:
        raise ConfigError(f"{p}: signing key not found") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{p}: not an unencrypted PEM private key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{p}: not an Ed25519 key (make one with mtlsi-edge keys new)")
    return key


def load_public_key(path: str | Path):
    """An Ed25519 public key from a PEM file; one-line errors."""
    serialization, ed25519, _ = _crypto()
    p = Path(path)
    try:
        key = serialization.load_pem_public_key(p.read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{p}: trusted key not found") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{p}: not a PEM public key ({e})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{p}: not an Ed25519 public key")
    return key


def trusted_keys(paths: list[str | Path] | None = None) -> dict[str, object]:
    """``key_id → public key`` of the keys given, else of :data:`TRUST_ENV` (files or folders
    of ``*.pem``/``*.pub``); empty when neither names any."""
    given = list(paths or [])
    if not given and os.environ.get(TRUST_ENV):
        given = [p for p in os.environ[TRUST_ENV].split(os.pathsep) if p]
    keys: dict[str, object] = {}
    for g in given:
        p = Path(g)
        files = sorted([*p.glob("*.pub"), *p.glob("*.pem")]) if p.is_dir() else [p]
        if p.is_dir() and not files:
            raise ConfigError(f"{p}: trust folder holds no *.pub or *.pem public keys")
        for f in files:
            k = load_public_key(f)
            keys[key_id(k)] = k
    return keys


def sign_bundle(folder: str | Path, manifest: dict, private_key_path: str | Path) -> str:
    """Write ``manifest.sig`` over ``manifest`` (as written in ``folder``, integrity field
    included) into ``folder``; returns the signing key's id."""
    key = load_private_key(private_key_path)
    folder = Path(folder)
    kid = key_id(key.public_key())
    sig = key.sign(canonical_bytes(manifest))
    atomic_write_json(folder / SIGNATURE_FILE, {
        "schema": SIGNATURE_SCHEMA, "algorithm": "ed25519", "key_id": kid,
        "signature": base64.b64encode(sig).decode()})
    return kid


@dataclass(frozen=True)
class SignatureStatus:
    """What a bundle says about its signature: ``signed`` and by which ``key_id``;
    ``verified`` when it was checked against a trusted key."""

    signed: bool
    key_id: str | None = None
    verified: bool = False

    def describe(self) -> str:
        if not self.signed:
            return "unsigned"
        if self.verified:
            return f"signed by trusted key {self.key_id} (verified)"
        return f"signed by key {self.key_id} (not verified: no --trust key given)"


def _read_signature(folder: Path) -> dict | None:
    path = folder / SIGNATURE_FILE
    if not path.exists():
        return None
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{path}: must be a plain file")
    try:
        sig = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: unreadable signature ({e})") from None
    if not (isinstance(sig, dict) and sig.get("schema") == SIGNATURE_SCHEMA
            and sig.get("algorithm") == "ed25519" and isinstance(sig.get("key_id"), str)
            and isinstance(sig.get("signature"), str)):
        raise BundleError(f"{path}: not an {SIGNATURE_SCHEMA} Ed25519 signature")
    return sig


def check_signature(folder: Path, manifest: dict, trusted: dict[str, object] | None
                    ) -> SignatureStatus:
    """The bundle's signature status; with ``trusted`` keys, refuse (:class:`SignatureError`,
    one line) an unsigned bundle, one signed by another key, or a manifest edited after
    signing."""
    sig = _read_signature(folder)
    if not trusted:
        return SignatureStatus(sig is not None, sig["key_id"] if sig else None)
    if sig is None:
        raise SignatureError(f"{folder}: unsigned bundle refused (a trusted key is set: "
                             f"sign it with --sign KEY where it is compiled)")
    key = trusted.get(sig["key_id"])
    if key is None:
        raise SignatureError(f"{folder}: signed by key {sig['key_id']}, which is not trusted "
                             f"here (trusted: {', '.join(sorted(trusted))})")
    _, _, invalid = _crypto()
    try:
        key.verify(base64.b64decode(sig["signature"], validate=True), canonical_bytes(manifest))
    except (invalid, ValueError):
        raise SignatureError(f"{folder}: signature does not match the manifest (edited after "
                             f"signing)") from None
    return SignatureStatus(True, sig["key_id"], verified=True)
