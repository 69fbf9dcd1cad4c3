"""A keyed hash (HMAC-SHA256) for model-cache entries, with the key kept outside the cache.

An unkeyed hash beside the weights proves only that nothing was damaged: whoever can write the cache can swap the
weights and recompute the hash, and the DP slot then silently audits non-DP weights. With a secret key that is not
in the cache, a forged entry cannot carry a valid tag, so it is refused (and the model retrained) like a damaged one.

The key is, in order: the ``DPAUDIT_CACHE_KEY`` environment variable (any string of at least 16 characters; set it
on every machine that shares a cache, such as CI runners), else ``$XDG_CONFIG_HOME/dpaudit/cache.key`` (default
``~/.config/dpaudit/cache.key``), created with 32 random bytes and mode 0600 on first use. Ray and process-pool
workers get the key inside their job, from the process that planned the audit, so remote nodes need no key file.

What it protects against: a person or process that can write the cache folder (a shared or network mount, a cache
restored from CI storage) but cannot read the key. What it does not: anyone who can read the key file or the
environment of the auditing process, or who can change dpaudit itself; and the job (with the key) travels to Ray
workers over Ray's own connections, which are not encrypted unless the cluster is set up with TLS.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from dpaudit.errors import DPAuditError

__all__ = ["KEY_ENV", "cache_secret", "entry_tag", "key_path", "tag_matches"]

KEY_ENV = "DPAUDIT_CACHE_KEY"
# The fields of an entry's record that the tag covers: everything a reader relies on to use the entry.
TAGGED = ("format", "cache_key", "weights_sha256", "record_sha256", "whitebox_sha256", "n_classes", "input_shape")


def key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "dpaudit" / "cache.key"


def cache_secret() -> bytes:
    """The cache key (see the module docstring); created on first use."""
    env = os.environ.get(KEY_ENV)
    if env is not None:
        if len(env) < 16:
            raise DPAuditError(f"{KEY_ENV} must be at least 16 characters (a random secret); it has {len(env)}")
        return env.encode()
    path = key_path()
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return _read_key(path)
    except OSError as exc:
        raise DPAuditError(f"cannot create the cache key {path} ({exc.strerror or exc.__class__.__name__}); set "
                           f"{KEY_ENV} to a random secret instead") from None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DPAuditError(f"cannot read the cache key {path} ({exc.strerror or exc.__class__.__name__}); set "
                           f"{KEY_ENV} instead") from None
    if len(key) < 16:
        raise DPAuditError(f"the cache key {path} is empty or too short; delete it (a new one is made) or set {KEY_ENV}")
    return key


def entry_tag(secret: bytes, meta: dict) -> str:
    """HMAC-SHA256 over the tagged fields of an entry's record (canonical JSON).

    >>> entry_tag(b"k" * 16, {"cache_key": "a", "weights_sha256": "b"}) == entry_tag(b"k" * 16, {"weights_sha256": "b",
    ...                                                                                       "cache_key": "a"})
    True
    """
    body = json.dumps({k: meta.get(k) for k in TAGGED}, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def tag_matches(secret: bytes, meta: dict) -> bool:
    tag = meta.get("entry_hmac")
    return isinstance(tag, str) and hmac.compare_digest(tag, entry_tag(secret, meta))
