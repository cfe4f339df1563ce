"""The API docs served offline: /docs and /redoc name no other host, their assets are
served from the installed package, the guards leave them open, and (in Chromium, with
every other host cut off) Swagger UI and ReDoc draw the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Route, expect

from replay.apidocs import ASSETS, TOKEN_SCHEME, assets_folder
from replay.server import Settings, create_app
from tests.browser import TIMEOUT, launch
from tests.conftest import LiveServer, LocalClient, serving

#: Any absolute URL in a page (src=, href=, url: '...').
ABSOLUTE = re.compile(r"""(?:https?:)?//[a-z0-9.-]+""", re.IGNORECASE)

ASSET_TYPES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}


@pytest.fixture
def client(scenarios_dir: Path) -> Iterator[TestClient]:
    with LocalClient(create_app(Settings(scenarios=scenarios_dir, isolated=True))) as client:
        yield client


def test_the_package_ships_every_asset() -> None:
    for name in ASSET_TYPES:
        assert (assets_folder() / name).stat().st_size > 0, name


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_name_no_other_host(client: TestClient, page: str) -> None:
    answer = client.get(page)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert ABSOLUTE.findall(html) == [], "the page loads something from elsewhere"
    assert f"{ASSETS}/" in html
    assert "/openapi.json" in html
    assert "default-src 'self'" in answer.headers["content-security-policy"]


def test_swagger_ui_asks_no_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


@pytest.mark.parametrize("name", ASSET_TYPES)
def test_the_assets_are_served_with_their_types(client: TestClient, name: str) -> None:
    answer = client.get(f"{ASSETS}/{name}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == ASSET_TYPES[name]
    assert answer.content == (assets_folder() / name).read_bytes()


def test_an_unknown_asset_and_a_way_out_of_the_folder_are_404(client: TestClient) -> None:
    assert client.get(f"{ASSETS}/nope.js").status_code == 404
    assert client.get(f"{ASSETS}/%2e%2e/%2e%2e/server.py").status_code == 404


def test_the_docs_need_no_token_but_the_api_does(scenarios_dir: Path) -> None:
    app = create_app(Settings(scenarios=scenarios_dir, isolated=True, token="sesame"))
    with LocalClient(app) as client:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect", "/openapi.json"):
            assert client.get(path).status_code == 200, path
        for name in ASSET_TYPES:
            assert client.get(f"{ASSETS}/{name}").status_code == 200, name
        assert client.get("/runs").status_code == 401


def test_a_server_with_a_token_declares_it_so_try_it_out_can_send_it(scenarios_dir: Path) -> None:
    app = create_app(Settings(scenarios=scenarios_dir, isolated=True, token="sesame"))
    with LocalClient(app) as client:
        document = client.get("/openapi.json").json()
        scheme = document["components"]["securitySchemes"][TOKEN_SCHEME]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        assert document["security"] == [{TOKEN_SCHEME: []}]
        # What Swagger UI sends once the token is given to its Authorize button:
        assert client.get("/runs", headers={"Authorization": "Bearer sesame"}).status_code == 200


def test_a_server_without_a_token_declares_none(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "security" not in document
    assert TOKEN_SCHEME not in document.get("components", {}).get("securitySchemes", {})


def test_the_docs_open_from_the_servers_own_pages_and_by_link(client: TestClient) -> None:
    own = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    linked = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    for path in ("/docs", "/redoc", f"{ASSETS}/swagger-ui.css"):
        assert client.get(path, headers=own).status_code == 200, path
        assert client.get(path, headers={**linked, "Sec-Fetch-Dest": "document"}).status_code == 200
    assert client.get("/docs", headers={"Host": "evil.example"}).status_code == 403


# --- in Chromium, with the network cut off ------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as launched:
        yield launched


@pytest.fixture
def served(scenarios_dir: Path) -> Iterator[LiveServer]:
    with serving(Settings(scenarios=scenarios_dir, isolated=True, token="sesame")) as live:
        yield live


@pytest.mark.parametrize(
    ("page", "drawn"),
    [("/docs", ".swagger-ui .opblock-summary-path"), ("/redoc", "[data-section-id]")],
)
def test_the_docs_draw_the_api_offline_in_a_browser(
    browser: Browser, served: LiveServer, page: str, drawn: str
) -> None:
    elsewhere: list[str] = []

    def only_the_server(route: Route) -> None:
        if route.request.url.startswith(served.url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context = browser.new_context()
    try:
        context.route("**/*", only_the_server)
        opened = context.new_page()
        opened.set_default_timeout(TIMEOUT)
        opened.goto(served.url + page)
        expect(opened.locator(drawn).first).to_be_visible(timeout=TIMEOUT)
        expect(opened.locator("body")).to_contain_text("/trigger/{scenario}", timeout=TIMEOUT)
    finally:
        context.close()
    assert elsewhere == []
