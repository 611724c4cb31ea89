"""The Quart application: blueprints, schemas/OpenAPI, CORS, errors, auth, security headers."""

from __future__ import annotations

from quart import Quart
from quart_cors import cors
from quart_schema import Info, QuartSchema

from common.settings import Settings
from services.gateway import (
    health_api,
    history_api,
    metrics_api,
    reports_api,
    scans_api,
    scheduler_api,
    volumes_api,
    ws_api,
)
from services.gateway.auth import install_auth
from services.gateway.errors import install_error_handlers
from services.gateway.openapi_doc import (
    API_DOCS_PATH,
    OPENAPI_PATH,
    SECURITY_SCHEMES,
    VolumeVizOpenAPIProvider,
)
from services.gateway.runtime import GatewayRuntime
from services.gateway.security_headers import install_security_headers
from services.gateway.static_files import install_static_files


def create_app(settings: Settings) -> Quart:
    app = Quart("volumeviz", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.config["JSON_SORT_KEYS"] = False
    QuartSchema(
        app,
        openapi_path=OPENAPI_PATH,
        swagger_ui_path=API_DOCS_PATH,
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(title="VolumeViz backend", version=health_api.VERSION),
        openapi_provider_class=VolumeVizOpenAPIProvider,
        security_schemes=SECURITY_SCHEMES,
        security=[{"bearer": []}] if settings.api_token is not None else None,
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    state = GatewayRuntime(settings)
    app.extensions["volumeviz"] = state

    for blueprint in (
        volumes_api.blueprint,
        scans_api.blueprint,
        history_api.blueprint,
        scheduler_api.blueprint,
        reports_api.blueprint,
        health_api.blueprint,
        ws_api.blueprint,
        metrics_api.blueprint,
    ):
        app.register_blueprint(blueprint)
    install_error_handlers(app)
    install_security_headers(app, API_DOCS_PATH)  # first: the request id is in every answer
    install_auth(app, settings)
    if settings.static_dir is not None:
        install_static_files(app, settings.static_dir)
    cors(
        app,
        allow_origin=settings.allowed_origins,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Content-Type", "Authorization", "X-Request-ID"],
        expose_headers=["X-Request-ID"],
        max_age=600,
    )

    @app.before_serving
    async def _start() -> None:
        await state.start()

    @app.after_serving
    async def _stop() -> None:
        await state.stop()

    return app
