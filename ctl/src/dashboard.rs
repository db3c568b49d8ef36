//! The dashboard: one page with live charts (qps in and out, the answer
//! latency histogram and percentiles, per-backend health and load, the top
//! rules), drawn in the browser from `/api/stats`, `/api/backends` and
//! `/api/status` once a second. Its three files are compiled into the
//! binary: an operator's machine may have no internet, so the page loads
//! nothing from elsewhere (and its Content-Security-Policy says so).

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("dashboard/index.html");
const APP: &str = include_str!("dashboard/app.js");
const STYLE: &str = include_str!("dashboard/style.css");

/// Same-origin only: scripts, styles, images and API calls.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'";

fn file(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        body,
    )
        .into_response()
}

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/dashboard/") }))
        .route(
            "/dashboard/",
            get(|| async { file(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { file(APP, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { file(STYLE, "text/css; charset=utf-8") }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_nothing_from_elsewhere() {
        for (name, text) in [("index.html", INDEX), ("app.js", APP), ("style.css", STYLE)] {
            for bad in ["http://", "https://", "//cdn", "@import"] {
                // The SVG namespace is an identifier, not a fetch.
                let hits = text
                    .match_indices(bad)
                    .filter(|(i, _)| !text[*i..].starts_with("http://www.w3.org/2000/svg"))
                    .count();
                assert_eq!(hits, 0, "{name} refers to {bad}");
            }
        }
        assert!(INDEX.contains("/dashboard/app.js") && INDEX.contains("/dashboard/style.css"));
    }
}
