"""The Quart application: blueprints, schemas/OpenAPI, CORS, errors, request ids."""

from __future__ import annotations

import re
import uuid

from quart import Quart, Response, g, request
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
from services.gateway.errors import install_error_handlers
from services.gateway.runtime import GatewayRuntime
from services.gateway.static_files import install_static_files

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def create_app(settings: Settings) -> Quart:
    app = Quart("volumeviz", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.config["JSON_SORT_KEYS"] = False
    QuartSchema(
        app,
        openapi_path="/api/v1/openapi.json",
        swagger_ui_path="/api/v1/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        info=Info(title="VolumeViz backend", version=health_api.VERSION),
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

    @app.before_request
    async def _assign_request_id() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    async def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = getattr(g, "request_id", "")
        return response

    @app.before_serving
    async def _start() -> None:
        await state.start()

    @app.after_serving
    async def _stop() -> None:
        await state.stop()

    return app
