"""A self-contained HTML page rendered from the OpenAPI document (``GET /docs``): no JavaScript, no CDN."""

from __future__ import annotations

import html
from typing import Any

import orjson


def render_docs_html(doc: dict[str, Any]) -> bytes:
    """A dependency-free HTML page listing every route, its parameters, responses and the JSON schemas."""
    esc = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mempulse API</title>",
        "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
        "code,pre{background:#f4f4f4}pre{padding:.5em;overflow:auto}td,th{border-bottom:1px solid #ddd;"
        "padding:.2em .5em;text-align:left;vertical-align:top}</style></head><body>",
        f"<h1>{esc(doc['info']['title'])} <small>{esc(doc['info']['version'])}</small></h1>",
        f"<p>{esc(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Authentication (when enabled): "
        "<code>x-api-key: KEY</code> or <code>Authorization: Bearer KEY</code>.</p>",
    ]
    for path, item in doc["paths"].items():
        op = item["get"]
        out.append(f"<h2 id='{esc(op['operationId'])}'>GET <code>{esc(path)}</code></h2>")
        out.append(f"<p><b>{esc(op['summary'])}</b>. {esc(op.get('description', ''))}</p>")
        if op["parameters"]:
            out.append("<table><tr><th>parameter</th><th>in</th><th>schema</th><th>description</th></tr>")
            for prm in op["parameters"]:
                out.append(
                    f"<tr><td><code>{esc(prm['name'])}</code></td><td>{esc(prm['in'])}</td>"
                    f"<td><code>{esc(orjson.dumps(prm['schema']).decode())}</code></td>"
                    f"<td>{esc(prm.get('description', ''))}</td></tr>"
                )
            out.append("</table>")
        codes = ", ".join(f"{code} ({esc(r['description'])})" for code, r in op["responses"].items())
        out.append(f"<p>Responses: {codes}</p>")
    out.append("<h2>Schemas</h2>")
    for name, schema in doc["components"]["schemas"].items():
        pretty = orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode()
        out.append(f"<h3 id='schema-{esc(name)}'>{esc(name)}</h3><pre>{esc(pretty)}</pre>")
    out.append("</body></html>")
    return "".join(out).encode()
