// Renders ReDoc from this server's OpenAPI document.
Redoc.init("/openapi.json", { hideDownloadButton: false }, document.getElementById("redoc"));
