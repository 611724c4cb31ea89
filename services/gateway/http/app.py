"""The Quart application: blueprints, schemas/OpenAPI, CORS, errors, auth, security headers."""

from __future__ import annotations

from quart import Quart
from quart_cors import cors
from quart_schema import Info, QuartSchema

from common.settings import Settings
from services.gateway.api import (
    health,
    history,
    hosts,
    metrics,
    reports,
    scans,
    scheduler,
    trees,
    volumes,
)
from services.gateway.http.auth import install_auth
from services.gateway.http.cached_front import CachedListingFront
from services.gateway.http.errors import install_error_handlers
from services.gateway.http.guards import (
    HostAllowList,
    install_guards,
    install_websocket_not_found,
)
from services.gateway.http.openapi_doc import (
    OPENAPI_PATH,
    SECURITY_SCHEMES,
    VolumeVizOpenAPIProvider,
)
from services.gateway.http.pages import pages_blueprint
from services.gateway.http.security_headers import install_security_headers
from services.gateway.http.session_api import session_blueprint
from services.gateway.http.static_files import install_static_files
from services.gateway.runtime import GatewayRuntime
from services.gateway.ui import ui_blueprint
from services.gateway.ws import endpoint as ws_endpoint


def create_app(settings: Settings, state: GatewayRuntime | None = None) -> Quart:
    app = Quart("volumeviz", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.config["JSON_SORT_KEYS"] = False
    QuartSchema(
        app,
        openapi_path=OPENAPI_PATH,
        swagger_ui_path=None,  # our own page (http/pages.py): its assets from a package, not a CDN
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(title="VolumeViz backend", version=health.VERSION),
        openapi_provider_class=VolumeVizOpenAPIProvider,
        security_schemes=SECURITY_SCHEMES,
        security=[{"bearer": []}] if settings.api_token is not None else None,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    state = state or GatewayRuntime(settings)
    app.extensions["volumeviz"] = state

    for blueprint in (
        volumes.blueprint,
        scans.blueprint,
        history.blueprint,
        trees.blueprint,
        scheduler.blueprint,
        reports.blueprint,
        health.blueprint,
        ws_endpoint.blueprint,
        metrics.blueprint,
        hosts.blueprint,
    ):
        app.register_blueprint(blueprint)
    sessions = state.sessions
    app.register_blueprint(session_blueprint(settings, sessions, state.keep_revoked_session))
    app.register_blueprint(pages_blueprint())
    app.register_blueprint(ui_blueprint(serve_at_root=settings.static_dir is None))
    install_error_handlers(app)
    # In this order: the request id is in every answer, then no foreign page gets further.
    install_security_headers(app)
    install_guards(app, settings)
    install_auth(app, settings, sessions)
    install_websocket_not_found(app)
    if settings.static_dir is not None:
        install_static_files(app, settings.static_dir)
    cors(
        app,
        allow_origin=settings.allowed_origins,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
        max_age=600,
    )

    # Quart's hook for ASGI middleware: a repeated listing skips Quart (http/cached_front.py).
    token = settings.api_token.get_secret_value() if settings.api_token is not None else None
    allowed_hosts = HostAllowList(settings.gateway_hosts)
    app.asgi_app = CachedListingFront(  # type: ignore[method-assign]
        app.asgi_app, state.listings, allowed_hosts, token
    )

    @app.before_serving
    async def _start() -> None:
        await state.start()

    @app.after_serving
    async def _stop() -> None:
        await state.stop()

    return app
