"""The endpoint client's on-disk reply cache: one JSON file per request, keyed by the SHA-256 of (model, messages,
request parameters). It holds model, messages, parameters and the reply, never a key or a header. A reply is stored
only after the client and its caller accepted it (`rlhfv.endpoint`), so a bad reply is never kept: a rerun after the
server was fixed asks again."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path


class ReplyCache:
    def __init__(self, folder: str | Path | None, model: str):
        self.folder = Path(folder) if folder else None
        self.model = model

    def key(self, messages: list[dict], params: dict) -> str:
        payload = {"model": self.model, "messages": messages, "params": params}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def path(self, messages: list[dict], params: dict) -> Path | None:
        return None if self.folder is None else self.folder / f"{self.key(messages, params)}.json"

    def load(self, messages: list[dict], params: dict) -> dict | None:
        """The stored reply {text, logprobs} (logprobs: a list of {token, logprob, top} or None), or None."""
        path = self.path(messages, params)
        if path is None or not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))["reply"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            return None  # an unreadable cache entry is asked again and overwritten
        if isinstance(stored, str):
            return {"text": stored, "logprobs": None}
        if not isinstance(stored, dict) or not isinstance(stored.get("text"), str):
            return None
        return stored

    def store(self, messages: list[dict], params: dict, reply: dict) -> None:
        path = self.path(messages, params)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"model": self.model, "messages": messages, "params": params, "reply": reply}
        # write then rename: a reader never sees half a file, even with several processes sharing the cache
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
