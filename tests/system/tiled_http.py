"""Plain HTTP to tiled's API and to the catalog consumer's status, as a script would talk."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from typing import Any

import numpy as np

from assonant_ioc.catalog.cli import filter_params


class Tiled:
    """Plain HTTP to tiled's API, as a script or a browser would talk to it."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url, self.api_key = url, api_key

    def get(self, path: str, params: list[tuple[str, str]] | None = None) -> bytes:
        query = urllib.parse.urlencode(params or [])
        request = urllib.request.Request(
            f"{self.url}/api/v1/{path}{'?' + query if query else ''}",
            headers={"Authorization": f"Apikey {self.api_key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            return bytes(reply.read())

    def search(self, *conditions: tuple[str, str, Any]) -> dict[str, dict[str, Any]]:
        """Keys -> metadata of the records matching every (key, operator, value); the
        operator ``eq``, ``lt``, ``le``, ``gt``, ``ge``, ``contains`` (a list's item), or
        ``text`` (full text; key unused)."""
        params = filter_params(conditions)
        params.append(("fields", "metadata"))
        reply = json.loads(self.get("search/", params))
        return {item["id"]: item["attributes"]["metadata"] for item in reply["data"]}

    def array(
        self, key: str, dataset: str, dtype: Any, shape: tuple[int, ...], index: str = ""
    ) -> Any:
        params = [("format", "application/octet-stream")]
        if index:
            params.append(("slice", index))
        raw = self.get(f"array/full/{key}/{dataset}", params)
        return np.frombuffer(raw, dtype=dtype).reshape(shape)
