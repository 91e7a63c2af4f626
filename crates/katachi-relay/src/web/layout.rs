//! The page shell and small shared pieces (maud escapes every interpolated value).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// A full page.
pub fn page(
    title: &str,
    signed_in: Option<&str>,
    csrf: Option<&str>,
    body: Markup,
) -> Html<String> {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · katachi" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                header.top {
                    a.brand href="/" { "katachi" }
                    @if let Some(who) = signed_in {
                        nav {
                            a href="/agents" { "My agents" }
                            a href="/settings/mcp" { "MCP servers" }
                            span.who { (who) }
                            @if let Some(token) = csrf {
                                form.inline method="post" action="/logout" {
                                    input type="hidden" name="csrf" value=(token);
                                    button.link type="submit" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(doc.into_string())
}

/// A page with one message (errors, confirmations).
pub fn message_page(title: &str, message: &str) -> Html<String> {
    page(
        title,
        None,
        None,
        html! { section.card { h1 { (title) } p { (message) } p { a href="/" { "Back to katachi" } } } },
    )
}

/// A notice line (error or info) above a form.
pub fn notice(kind: &str, text: Option<&str>) -> Markup {
    html! { @if let Some(t) = text { p class=(format!("notice {kind}")) role="alert" { (t) } } }
}

/// 404 for unknown paths.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        message_page("Not found", "There is no page at this address."),
    )
        .into_response()
}

/// Whole minutes, rounded up, for "try again in N minutes".
pub fn minutes(secs: i64) -> i64 {
    (secs.max(0) + 59) / 60
}
