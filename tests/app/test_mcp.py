"""The app as an MCP server (`launch(mcp=True)`): its tools are listed over MCP's streamable HTTP transport, and the
generate tool describes each parameter with the text of the handler's docstring."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import urllib.request

import pytest
from app_support import serve

pytest.importorskip("mcp", reason='launch(mcp_server=True) needs the mcp package: pip install "gradio[mcp]"')


@pytest.fixture(scope="module")
def mcp_app(tmp_path_factory, tiny_options):
    with serve(tmp_path_factory.mktemp("mcp"), config=dict(load=tiny_options), mcp=True) as (app, _):
        yield app


def docstring_args(fn) -> dict[str, str]:
    """{name: description} from the Google-style "Args:" section of a docstring."""
    doc = inspect.getdoc(fn) or ""
    section = doc.split("Args:", 1)[1].split("\n\n", 1)[0]
    return dict(re.findall(r"^\s*(\w+): (.+)$", section, re.MULTILINE))


def generate_handler(app):
    (fn,) = [block_fn.fn for block_fn in app.fns.values() if block_fn.api_name == "generate"]
    return fn


async def list_tools(url: str):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return (await session.list_tools()).tools


def test_generate_is_an_mcp_tool_with_its_docstring(mcp_app):
    tools = {tool.name: tool for tool in asyncio.run(list_tools(mcp_app.local_url + "gradio_api/mcp/"))}
    handler = generate_handler(mcp_app)
    tool = tools[handler.__name__]
    assert tool.description.startswith("Generate one image")
    properties = tool.inputSchema["properties"]
    expected = docstring_args(handler)
    assert list(properties) == list(expected)
    for name, description in expected.items():
        assert properties[name]["description"] == description, name
    assert set(tool.inputSchema["required"]) == {"prompt", "negative_prompt"}


def test_mcp_schema_route_names_the_generate_endpoint(mcp_app):
    with urllib.request.urlopen(mcp_app.local_url + "gradio_api/mcp/schema", timeout=30) as response:
        schema = json.load(response)
    endpoints = {tool["meta"]["endpoint_name"]: tool for tool in schema}
    assert "generate" in endpoints
    assert "denoising steps" in endpoints["generate"]["inputSchema"]["properties"]["steps"]["description"]
