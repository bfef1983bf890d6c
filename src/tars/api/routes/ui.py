"""The dashboard web page: static files, public so the login form can load.

The page is a handful of JavaScript modules served as they are from /static (no build step). So
that a browser never runs a new page with a module it cached from an older version, the page
names every module and the style sheet with a digest of its content: an import map sends
`import "./live.js"` to `/static/live.js?v=<digest>`. A changed file gets a new address; an
unchanged one stays cached.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from tars.api.deps import Public

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ENTRY_MODULE = "app.js"
STYLE_SHEET = "style.css"

router = APIRouter(include_in_schema=False, dependencies=[Public])


@router.api_route("/", methods=["GET", "HEAD"])
def index() -> HTMLResponse:
    html = page(_fingerprint())
    return HTMLResponse(
        html, headers={"Cache-Control": "no-cache", "Content-Security-Policy": content_security_policy(html)}
    )


def content_security_policy(html: str) -> str:
    """Only this origin's scripts, styles and sockets; the one inline script, the import map, by its
    hash. An injected script or a framing page gets nothing."""
    inline = re.search(r'<script type="importmap">(.*?)</script>', html, re.DOTALL)
    hashes = ""
    if inline is not None:
        digest = base64.b64encode(hashlib.sha256(inline.group(1).encode()).digest()).decode()
        hashes = f" 'sha256-{digest}'"
    return (
        f"default-src 'self'; script-src 'self'{hashes}; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    )


def _fingerprint() -> tuple[tuple[str, int, int], ...]:
    """What the page depends on, cheaply: the files' names, sizes and modification times."""
    return tuple(
        (path.name, path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(STATIC_DIR.iterdir())
        if path.suffix in (".html", ".js", ".css")
    )


@lru_cache(maxsize=4)
def page(_fingerprint: tuple[tuple[str, int, int], ...]) -> str:
    """index.html with versioned addresses; computed again only when a file changed."""
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    versions = {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        for path in sorted(STATIC_DIR.iterdir())
        if path.suffix in (".js", ".css")
    }
    imports = {
        f"/static/{name}": f"/static/{name}?v={digest}" for name, digest in versions.items() if name.endswith(".js")
    }
    # "</" cannot end the script element early: the JSON holds only paths and hex digits.
    import_map = f'<script type="importmap">{json.dumps({"imports": imports}, sort_keys=True)}</script>'
    entry = f'<script type="module" src="/static/{ENTRY_MODULE}"></script>'
    style = f'<link rel="stylesheet" href="/static/{STYLE_SHEET}">'
    if entry not in html or style not in html:
        raise RuntimeError(f"{STATIC_DIR / 'index.html'} no longer loads {ENTRY_MODULE} and {STYLE_SHEET} as expected")
    html = html.replace(style, f'<link rel="stylesheet" href="{versioned(STYLE_SHEET, versions)}">')
    return html.replace(
        entry, f'{import_map}\n  <script type="module" src="{versioned(ENTRY_MODULE, versions)}"></script>'
    )


def versioned(name: str, versions: dict[str, str]) -> str:
    """The address of a static file at its current content."""
    return f"/static/{name}?v={versions[name]}"
