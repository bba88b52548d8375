//! The static pages both example servers serve, embedded in the binary.
//!
//! Framework-neutral: each server maps these to its own routes and responses.
//! Every file comes from `examples/server-common/assets/` (see the README there for
//! where the vendored renderer came from); nothing is loaded from outside the server.
//!
//! Routes every server must serve (status 200, `Content-Type` from [`Asset::content_type`],
//! body [`Asset::body`]):
//!
//! | method and path            | answer                                        |
//! |----------------------------|-----------------------------------------------|
//! | `GET /`                    | [`index_page()`]: the log-in and profile page |
//! | `GET /admin`               | [`admin_page()`]: the operators' page         |
//! | `GET /docs`                | [`docs_page()`]: renders `/api/openapi.json`  |
//! | `GET /docs/{file}`         | [`docs_asset(file)`](docs_asset): the renderer's script and its license notes; `None` → 404 `not_found` JSON error |
//!
//! The pages call `/api/openapi.json` and the `/api/…` routes of API.md, nothing else.
//! Suggested extra header for the `/docs/{file}` answers: `Cache-Control: public, max-age=86400`
//! (see [`DOCS_ASSET_CACHE_CONTROL`]); the HTML pages are small and need none.

use std::fmt;

/// A static file ready to be served: its media type and its bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The value for the `Content-Type` header, e.g. `text/html; charset=utf-8`.
    pub content_type: &'static str,
    /// The file's bytes, embedded at compile time.
    pub body: &'static [u8],
}

impl fmt::Debug for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Asset")
            .field("content_type", &self.content_type)
            .field("len", &self.body.len())
            .finish()
    }
}

/// `Content-Type` of the HTML pages.
const HTML: &str = "text/html; charset=utf-8";
/// `Content-Type` of scripts.
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
/// `Content-Type` of license notes.
const TEXT: &str = "text/plain; charset=utf-8";

/// A `Cache-Control` value suited to the answers of [`docs_asset`] (the files are
/// embedded, so they change only with the binary).
pub const DOCS_ASSET_CACHE_CONTROL: &str = "public, max-age=86400";

/// The path under which [`docs_asset`] files are served: `GET /docs/{file}`.
pub const DOCS_ASSET_PREFIX: &str = "/docs/";

/// The web page served at `GET /`: log in by phone and code, see the profile and
/// referrals, activate an invite code (the hooks of API.md's "Web pages").
#[must_use]
pub fn index_page() -> Asset {
    Asset {
        content_type: HTML,
        body: include_bytes!("../assets/index.html"),
    }
}

/// The operators' page served at `GET /admin`: an operator logs in by phone and
/// code, then searches users, opens one (profile, referrer, referrals, block),
/// blocks or unblocks them with a reason, voids their rewards, and sees the
/// statistics (a bar chart of the last 30 days), the leaderboard and the CSV
/// exports, all through `/api/admin/*` (see `assets/README.md` for its hooks).
#[must_use]
pub fn admin_page() -> Asset {
    Asset {
        content_type: HTML,
        body: include_bytes!("../assets/admin.html"),
    }
}

/// The API reference page served at `GET /docs`: it loads the renderer from
/// `/docs/redoc.standalone.js` and renders `/api/openapi.json`.
#[must_use]
pub fn docs_page() -> Asset {
    Asset {
        content_type: HTML,
        body: include_bytes!("../assets/docs.html"),
    }
}

/// A file served at `GET /docs/{file}`, looked up by `file` (the part after `/docs/`;
/// a leading `/` is ignored). `None` for any other name: answer 404 `not_found`.
#[must_use]
pub fn docs_asset(file: &str) -> Option<Asset> {
    let (content_type, body): (&'static str, &'static [u8]) =
        match file.strip_prefix('/').unwrap_or(file) {
            "redoc.standalone.js" => (JAVASCRIPT, include_bytes!("../assets/redoc.standalone.js")),
            "redoc.standalone.js.LICENSE.txt" => (
                TEXT,
                include_bytes!("../assets/redoc.standalone.js.LICENSE.txt"),
            ),
            "redoc.LICENSE" => (TEXT, include_bytes!("../assets/redoc.LICENSE")),
            _ => return None,
        };
    Some(Asset { content_type, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_html_and_load_nothing_from_outside() {
        for page in [index_page(), admin_page(), docs_page()] {
            assert!(page.content_type.starts_with("text/html"));
            let text = std::str::from_utf8(page.body).expect("pages are UTF-8");
            assert!(text.starts_with("<!doctype html>"));
            for outside in ["http://", "https://", "//cdn", "src=\"//", "href=\"//"] {
                assert!(!text.contains(outside), "page refers to {outside}");
            }
        }
    }

    #[test]
    fn docs_page_loads_the_served_renderer() {
        let text = std::str::from_utf8(docs_page().body).expect("UTF-8");
        assert!(text.contains("src=\"/docs/redoc.standalone.js\""));
        assert!(text.contains("/api/openapi.json"));
        let script = docs_asset("redoc.standalone.js").expect("renderer is embedded");
        assert!(script.content_type.starts_with("text/javascript"));
        assert!(script.body.len() > 100_000);
        assert!(docs_asset("/redoc.standalone.js").is_some());
    }

    #[test]
    fn unknown_docs_files_are_none() {
        for name in [
            "",
            "..",
            "../index.html",
            "redoc.standalone.js.map",
            "REDOC.STANDALONE.JS",
        ] {
            assert!(docs_asset(name).is_none(), "{name}");
        }
        assert!(docs_asset("redoc.standalone.js.LICENSE.txt").is_some());
        assert!(docs_asset("redoc.LICENSE").is_some());
    }

    #[test]
    fn index_page_keeps_the_hooks_of_api_md() {
        let text = std::str::from_utf8(index_page().body).expect("UTF-8");
        for hook in [
            "name=\"phone\"",
            "name=\"code\"",
            "name=\"invite_code\"",
            "id=\"invite-code\"",
            "id=\"activated-invite-code\"",
            "id=\"referrals\"",
            "role=\"alert\"",
            "id=\"dev-code\"",
            "id=\"reward-balances\"",
            "id=\"rewards\"",
        ] {
            assert!(text.contains(hook), "index.html lacks {hook}");
        }
    }

    /// What turns a string into markup or code in a page: neither page may
    /// use any of it (every text from the API is set with `textContent` or
    /// an attribute).
    const MARKUP_SINKS: [&str; 9] = [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setTimeout(\"",
        "srcdoc",
        "javascript:",
    ];

    fn assert_no_markup_sink(page: &str, body: &[u8]) {
        let text = std::str::from_utf8(body).expect("UTF-8");
        for sink in MARKUP_SINKS {
            assert!(!text.contains(sink), "{page} uses {sink}");
        }
    }

    #[test]
    fn index_page_never_turns_data_into_markup() {
        assert_no_markup_sink("index.html", index_page().body);
    }

    #[test]
    fn admin_page_keeps_its_hooks() {
        let text = std::str::from_utf8(admin_page().body).expect("UTF-8");
        for hook in [
            "name=\"phone\"",
            "name=\"code\"",
            "id=\"dev-code\"",
            "role=\"alert\"",
            "name=\"q\"",
            "id=\"users\"",
            "id=\"more-users\"",
            "id=\"user-detail\"",
            "id=\"detail-blocked\"",
            "id=\"detail-referrer\"",
            "id=\"detail-referrals\"",
            "name=\"block_reason\"",
            "id=\"unblock\"",
            "id=\"user-rewards\"",
            "name=\"void_reason\"",
            "id=\"stats-chart\"",
            "id=\"leaderboard\"",
            "href=\"/api/admin/export/referrals.csv\"",
            "href=\"/api/admin/export/rewards.csv\"",
            "/api/admin/users/",
            "/rewards",
        ] {
            assert!(text.contains(hook), "admin.html lacks {hook}");
        }
    }

    /// The operators' page follows the user page's rules (its test
    /// `index_page_never_turns_data_into_markup`): every text from the API
    /// is set with `textContent` (or an attribute), never as markup; and it
    /// carries the same Content-Security-Policy (only the server itself).
    #[test]
    fn admin_page_never_turns_data_into_markup() {
        assert_no_markup_sink("admin.html", admin_page().body);
        let text = std::str::from_utf8(admin_page().body).expect("UTF-8");
        assert!(
            text.contains(
                "content=\"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self';"
            ),
            "admin.html lacks the Content-Security-Policy that allows only the server"
        );
    }

    /// The exports need the operator's token: the page sends it in the
    /// `Authorization` header, never in a URL.
    #[test]
    fn admin_page_never_puts_the_token_in_a_url() {
        let text = std::str::from_utf8(admin_page().body).expect("UTF-8");
        for leak in ["token=", "access_token=", "?token", "&token"] {
            assert!(!text.contains(leak), "admin.html builds a URL with {leak}");
        }
        assert!(text.contains("\"Authorization\": \"Bearer \""));
        assert!(text.contains("URL.createObjectURL"));
    }

    #[test]
    fn debug_does_not_dump_the_body() {
        let shown = format!("{:?}", docs_asset("redoc.standalone.js").expect("embedded"));
        assert!(shown.len() < 100, "{shown}");
    }
}
