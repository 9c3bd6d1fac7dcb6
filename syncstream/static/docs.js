// The interactive API reference over the node's own OpenAPI document. "Authorize" takes a
// bearer token (from POST /api/auth/login); Swagger UI keeps it in memory only.
"use strict";
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  tryItOutEnabled: false,
});
