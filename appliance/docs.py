"""/docs (Swagger UI), /redoc and /openapi.json, served with their JS/CSS from the appliance itself.

FastAPI's own doc pages load Swagger UI and ReDoc from a CDN, which leaves /docs blank on a box without internet.
The assets come from the `fastapi-offline` package (Swagger UI 5 and ReDoc 2 bundles, MIT; their licence texts are
in the package), mounted under ASSET_PATH; the pages are FastAPI's own, pointed at them ("self-hosting JavaScript
and CSS for docs" in the FastAPI docs).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSET_PATH = "/_docs-assets"
TITLE = "Render appliance API"
DESCRIPTION = ("Photo + texture swatch (or paint colour #RRGGBB) -> the house re-clad. See the render endpoints for "
               "the job contract.")


def asset_dir() -> str:
    return str(files("fastapi_offline") / "static")


def install_docs(app: Any, *, version: str = "1") -> None:
    """On NiceGUI's (FastAPI) `app`: the OpenAPI document and the two doc pages. ui.run must then be called with
    fastapi_docs=False, or it would add FastAPI's CDN pages in front of these."""
    app.title, app.description, app.version = TITLE, DESCRIPTION, version
    app.docs_url = app.redoc_url = None
    app.openapi_url = "/openapi.json"
    app.setup()  # adds the /openapi.json route (and no CDN pages: docs_url / redoc_url are None)
    app.mount(ASSET_PATH, StaticFiles(directory=asset_dir()), name="docs-assets")
    favicon = f"{ASSET_PATH}/favicon.png"
    redirect = app.swagger_ui_oauth2_redirect_url

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{TITLE} - Swagger UI",
                                   oauth2_redirect_url=redirect, swagger_js_url=f"{ASSET_PATH}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSET_PATH}/swagger-ui.css", swagger_favicon_url=favicon)

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{TITLE} - ReDoc",
                              redoc_js_url=f"{ASSET_PATH}/redoc.standalone.js", redoc_favicon_url=favicon,
                              with_google_fonts=False)
