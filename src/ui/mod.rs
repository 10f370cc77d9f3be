//! What the appliance's and the witness's web consoles (`/ui/`) share: the page frame, the
//! stylesheet, and the security headers every page and asset is sent with.
//!
//! Pages are rendered on the server with [`maud`] (every value escaped), so their tables
//! and forms work without JavaScript. Scripts and styles are files embedded in the binary
//! and served from `/ui/assets/`; no page holds an inline script or style, so the strict
//! Content-Security-Policy below holds (`script-src 'self'`). Nothing is fetched from
//! elsewhere at run time.

use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// The Content-Security-Policy of every console page: only this origin's scripts, styles
/// and images; no inline script, no framing, forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet both consoles use.
pub const STYLE_CSS: &str = include_str!("../../assets/ui/style.css");

/// The security headers sent with every console page and asset.
pub fn security_headers() -> [(HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ]
}

/// A rendered page as an HTML answer with [`security_headers`].
pub fn html_response(status: StatusCode, page: Markup) -> Response {
    (
        status,
        security_headers(),
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page.into_string(),
    )
        .into_response()
}

/// One entry of a console's navigation bar: its label and where it goes.
pub struct NavLink<'a> {
    /// The text shown.
    pub label: &'a str,
    /// The link target (a path on this server).
    pub href: &'a str,
}

/// The page frame: title, header with the console's name and navigation, the body, and the
/// scripts named in `scripts` (paths under `/ui/assets/`, loaded deferred).
pub fn page(
    console: &str,
    title: &str,
    nav: &[NavLink<'_>],
    scripts: &[&str],
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · " (console) }
                link rel="stylesheet" href="/ui/assets/style.css";
                @for s in scripts {
                    script src={ "/ui/assets/" (s) } defer {}
                }
            }
            body {
                header.top {
                    span.brand { (console) }
                    nav {
                        @for link in nav {
                            a href=(link.href) { (link.label) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The error page: the status and what went wrong, in the console's frame.
pub fn error_page(
    console: &str,
    nav: &[NavLink<'_>],
    status: StatusCode,
    message: &str,
) -> Response {
    let title = status.canonical_reason().unwrap_or("Error");
    html_response(
        status,
        page(
            console,
            title,
            nav,
            &[],
            html! {
                h1 { (title) }
                p.error { (message) }
            },
        ),
    )
}

/// An embedded asset (`/ui/assets/{name}`) of one console: `extra` holds that console's
/// own files (name, media type, bytes); the stylesheet is shared. 404 for anything else.
pub fn asset(Path(name): Path<String>, extra: &[(&str, &'static str, &'static str)]) -> Response {
    let found = if name == "style.css" {
        Some(("text/css; charset=utf-8", STYLE_CSS))
    } else {
        extra
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, media, body)| (*media, *body))
    };
    match found {
        Some((media, body)) => (
            security_headers(),
            [(header::CONTENT_TYPE, HeaderValue::from_static(media))],
            body,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            security_headers(),
            format!("no asset {name:?}"),
        )
            .into_response(),
    }
}

/// Unix milliseconds as RFC 3339 UTC (seconds), or "—" for none.
pub fn time_ms(ms: Option<u64>) -> String {
    ms.and_then(|ms| i64::try_from(ms).ok())
        .and_then(|ms| ms.checked_mul(1_000_000))
        .map_or_else(|| "—".to_owned(), crate::chain::event::format_time_ns)
}

/// A duration in seconds as people read it: "42 s", "5 min", "3 h", "2 d".
pub fn age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7_199 => format!("{} min", secs / 60),
        7_200..=172_799 => format!("{} h", secs / 3_600),
        _ => format!("{} d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn pages_escape_values_and_carry_no_inline_script() {
        let p = page(
            "console",
            "<t>",
            &[NavLink {
                label: "a&b",
                href: "/ui/",
            }],
            &["x.js"],
            html! { p { ("<script>alert(1)</script>") } },
        )
        .into_string();
        assert!(p.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(p.contains("a&amp;b"));
        assert!(p.contains(r#"<script src="/ui/assets/x.js" defer></script>"#));
        // The only script elements load files: none holds code.
        assert_eq!(p.matches("<script").count(), 1);
        assert!(!p.contains("style="));
    }

    #[test]
    fn assets_are_served_with_their_type_and_unknown_ones_are_404() {
        let extra = [("app.js", "text/javascript; charset=utf-8", "// js")];
        let r = asset(Path("style.css".into()), &extra);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/css; charset=utf-8");
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"));
        let r = asset(Path("app.js".into()), &extra);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        let r = asset(Path("../Cargo.toml".into()), &extra);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(5), "5 s");
        assert_eq!(age(600), "10 min");
        assert_eq!(age(36_000), "10 h");
        assert_eq!(age(864_000), "10 d");
        assert_eq!(time_ms(None), "—");
        assert_eq!(time_ms(Some(0)), "1970-01-01T00:00:00Z");
    }
}
