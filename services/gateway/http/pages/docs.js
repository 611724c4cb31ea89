// Swagger UI, served by the gateway from the swagger-ui-py package: nothing from a CDN.
window.ui = SwaggerUIBundle({ url: "/api/v1/openapi.json", dom_id: "#swagger-ui" });
