"""Dropping a file on Compare > "Load a sheet PNG" of a live app the way a browser does it (the upload route, then
the queue): for tests/app/test_load_sheet_app.py and bench/hostile_sheets.py."""

from __future__ import annotations

import json

import httpx

LOAD_FROM = "sd35ui.app.explorer"  # the handler of the explorer's "Load a sheet PNG"


def load_index(app) -> int:
    """The event of the file drop: the first the explorer wires (History's "open in the explorer" comes later)."""
    return min(i for i, f in app.fns.items() if f.name == "load" and getattr(f.fn, "__module__", "") == LOAD_FROM)


def drop(url: str, index: int, path, session: str = "hostile") -> dict:
    """Upload `path` and run the explorer's load on it through the queue; the last queue message."""
    with httpx.Client(timeout=60) as client:
        files = {"files": (path.name, path.read_bytes(), "image/png")}
        (uploaded,) = client.post(f"{url}/gradio_api/upload", files=files).raise_for_status().json()
        data = [{"path": uploaded, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}]
        body = {"data": data, "fn_index": index, "session_hash": session}
        client.post(f"{url}/gradio_api/queue/join", json=body).raise_for_status()
        with client.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    if message.get("msg") == "process_completed":
                        return message
    raise AssertionError("the queue closed without an answer")
