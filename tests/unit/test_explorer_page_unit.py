"""The sheet explorer page as text: self-contained (no URL anywhere), the manifest round-trips through its embedded
JSON, hostile text cannot leave the JSON's script element, and a malformed manifest is refused saying why."""

from __future__ import annotations

import copy
import html.parser
import json
import re

import pytest

from sd35ui.core.explorer_page import check_manifest, explorer_html, read_manifest, write_explorer

HOSTILE = [
    "</script><script>alert(1)</script>",
    "</SCRIPT ><img src=x onerror=alert(1)>",
    "<!-- <script>",
    "]]> --> & &amp; \u2028\u2029 \"quoted\" 'single' \\ back",
    "{{MANIFEST}} {{TITLE}}",
]


def manifest(**changes):
    """A 2 x 2 x 2 sheet with one cell not made."""
    axes = [
        {"name": "Steps", "values": [10, 20], "labels": ["Steps: 10", "Steps: 20"]},
        {"name": "Guidance", "values": [3, 7.5], "labels": ["Guidance: 3", "Guidance: 7.5"]},
        {"name": "Sampler", "values": ["Euler", "Heun"], "labels": ["Sampler: Euler", "Sampler: Heun"]},
    ]
    cells = [
        {
            "file": f"sheet-{i}{j}{k}.png",
            "coords": [i, j, k],
            "width": 64,
            "height": 48,
            "settings": {"steps": axes[0]["values"][i], "guidance": axes[1]["values"][j], "prompt": "a red fox"},
            "seconds": 1.25,
        }
        for i in range(2)
        for j in range(2)
        for k in range(2)
        if (i, j, k) != (1, 1, 1)
    ]
    data = {
        "title": "a red fox\nseed 5",
        "model": "tiny",
        "axes": axes,
        "cells": cells,
        "arrangement": {"x": 1, "y": 0, "outer": [2]},
    }
    data.update(changes)
    return data


class ScriptReader(html.parser.HTMLParser):
    """What an HTML parser sees: the text of every <script>, by type."""

    def __init__(self):
        super().__init__()
        self.scripts: list[tuple[str, str]] = []
        self._type: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._type = dict(attrs).get("type", "text/javascript")
            self.scripts.append((self._type, ""))

    def handle_data(self, data):
        if self._type is not None:
            kind, text = self.scripts[-1]
            self.scripts[-1] = (kind, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._type = None


def scripts_of(page):
    reader = ScriptReader()
    reader.feed(page)
    reader.close()
    return reader.scripts


def test_the_page_names_no_url_and_loads_nothing_by_itself():
    page = explorer_html(manifest())
    for pattern in ("http:", "https:", "//", "url(", "@import", "<link", "<iframe", "fetch(", "XMLHttpRequest"):
        assert pattern not in page, pattern
    # no address in the markup at all: the images are set by the script, from the manifest's file names
    assert not re.search(r"\b(src|href|srcset|action|poster|data)\s*=\s*[\"']", page, re.IGNORECASE)
    assert [kind for kind, _ in scripts_of(page)] == ["application/json", "text/javascript"]


def test_the_manifest_round_trips_through_the_embedded_json():
    original = manifest(title="Fuchs im Schnee \u2014 \u96ea\u306e\u72d0\nline two", distances={"Steps": [[1.5]]})
    page = explorer_html(original)
    assert read_manifest(page) == original
    kind, text = scripts_of(page)[0]
    assert kind == "application/json" and json.loads(text) == original


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_inside_the_json(text):
    hostile = manifest(title=text, model=text)
    hostile["axes"][2]["labels"][0] = text
    hostile["cells"][0]["settings"]["prompt"] = text
    page = explorer_html(hostile)
    scripts = scripts_of(page)
    assert [kind for kind, _ in scripts] == ["application/json", "text/javascript"]  # nothing broke out
    assert json.loads(scripts[0][1]) == hostile  # and the text is intact
    assert "<" not in scripts[0][1] and ">" not in scripts[0][1]
    assert len(re.findall(r"</script", page, re.IGNORECASE)) == 2
    assert "<script>alert" not in page and "<img src=x" not in page


def test_the_title_element_is_plain_text():
    page = explorer_html(manifest(title="<b>bold</b> & fox {{MANIFEST}}\nsecond line"))
    title = re.search(r"<title>(.*?)</title>", page, re.DOTALL).group(1)
    assert title == "&lt;b&gt;bold&lt;/b&gt; &amp; fox {{MANIFEST}} - sd35ui sheet explorer"


def test_write_explorer_writes_index_html(tmp_path):
    path = write_explorer(tmp_path, manifest())
    assert path == tmp_path / "index.html"
    assert read_manifest(path.read_text(encoding="utf-8")) == manifest()


def test_a_sheet_without_cells_or_y_axis_is_fine():
    one_axis = manifest(cells=[], arrangement={"x": 0, "y": None, "outer": [1, 2]})
    assert read_manifest(explorer_html(one_axis)) == one_axis


def broken(change):
    data = manifest()
    change(data)
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not a dict", "must be a dict"),
        (broken(lambda m: m.pop("title")), "text 'title'"),
        (broken(lambda m: m["axes"].extend(copy.deepcopy(m["axes"][:2]))), "1 to 4 axes"),
        (broken(lambda m: m["axes"][1].update(name="Steps")), "Two axes are named 'Steps'"),
        (broken(lambda m: m["axes"][0]["labels"].pop()), "one text label per value"),
        (broken(lambda m: m["axes"][0].update(values=[])), "non-empty list of 'values'"),
        (broken(lambda m: m.update(arrangement={"x": 1, "y": 0, "outer": []})), "exactly once"),
        (broken(lambda m: m.update(arrangement={"x": 1, "y": 1, "outer": [2]})), "exactly once"),
        (broken(lambda m: m.update(arrangement={"x": 1, "y": 0, "outer": [3]})), "exactly once"),
        (broken(lambda m: m["cells"][0].update(file="../secret.png")), "plain file name"),
        (broken(lambda m: m["cells"][0].update(file="http://example.invalid/a.png")), "plain file name"),
        (broken(lambda m: m["cells"][0].update(coords=[0, 2, 0])), "one index per axis"),
        (broken(lambda m: m["cells"][0].update(coords=[0, 0])), "one index per axis"),
        (broken(lambda m: m["cells"][0].update(coords=[0, True, 0])), "one index per axis"),
        (broken(lambda m: m["cells"][1].update(coords=[0, 0, 0])), "Cells 0 and 1 have the same coords"),
        (broken(lambda m: m["cells"][0].update(width=0)), "'width' in pixels"),
        (broken(lambda m: m["cells"][0].update(settings=["steps"])), "'settings' must be a dict"),
        (broken(lambda m: m["cells"][0].update(seconds=float("nan"))), "cannot be written as JSON"),
        (broken(lambda m: m["cells"][0]["settings"].update(path=object())), "cannot be written as JSON"),
    ],
)
def test_a_malformed_manifest_is_refused_saying_what_is_wrong(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        explorer_html(data)


def test_check_manifest_accepts_the_documented_shape():
    check_manifest(manifest())
