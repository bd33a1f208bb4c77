//! The web dashboard at `/_wafer/ui`: one page, its script and its style sheet, embedded in
//! the binary. Loading it needs no token; it asks for the admin token and makes every call
//! through the authenticated admin API (see `ui/app.js`).

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// Scripts and styles from this server only; no inline script, no frames.
const POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

#[utoipa::path(get, path = "/_wafer/ui", tag = "operations",
    responses((status = 200, description = "The dashboard page", content_type = "text/html", body = String)))]
pub(crate) async fn page() -> Response {
    file(INDEX, "text/html; charset=utf-8")
}

#[utoipa::path(get, path = "/_wafer/ui/{file}", tag = "operations",
    params(("file" = String, Path, description = "`app.js` or `style.css`")),
    responses((status = 200, description = "The dashboard's script or style sheet", body = String), (status = 404, description = "No such file")))]
pub(crate) async fn asset(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => file(SCRIPT, "text/javascript; charset=utf-8"),
        "style.css" => file(STYLE, "text/css; charset=utf-8"),
        _ => (
            StatusCode::NOT_FOUND,
            format!("no dashboard file `{name}`\n"),
        )
            .into_response(),
    }
}

fn file(body: &'static str, kind: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
