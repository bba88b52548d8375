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
//! | `GET /assets/{file}`       | [`page_script(file)`](page_script): the scripts of `/` and `/admin`; `None` → 404 `not_found` JSON error |
//!
//! Both pages load their scripts from `/assets/` (`script-src 'self'`, no inline script):
//! `page.js`, what they share (the log-in, the API client, formatting), then the page's own.
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

/// The path under which [`page_script`] files are served: `GET /assets/{file}`.
pub const PAGE_SCRIPT_PREFIX: &str = "/assets/";

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

/// A script of the web pages served at `GET /assets/{file}`, looked up by `file` (the
/// part after `/assets/`; a leading `/` is ignored): `page.js` (what both pages share),
/// `index.js` (the page at `/`) and `admin.js` (the page at `/admin`). `None` for any
/// other name: answer 404 `not_found`. No `Cache-Control` is suggested: a page and its
/// scripts change together, with the binary.
#[must_use]
pub fn page_script(file: &str) -> Option<Asset> {
    let body: &'static [u8] = match file.strip_prefix('/').unwrap_or(file) {
        "page.js" => include_bytes!("../assets/page.js"),
        "index.js" => include_bytes!("../assets/index.js"),
        "admin.js" => include_bytes!("../assets/admin.js"),
        _ => return None,
    };
    Some(Asset {
        content_type: JAVASCRIPT,
        body,
    })
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

    /// The scripts a page loads: every `<script>` has a `src` under `/assets/` that
    /// [`page_script`] serves (no inline script: the pages' CSP has `script-src 'self'`).
    fn scripts_of(page: Asset) -> Vec<Asset> {
        let text = std::str::from_utf8(page.body).expect("UTF-8");
        text.split("<script")
            .skip(1)
            .map(|tag| {
                let tag = tag.split('>').next().expect("a tag");
                let src = tag
                    .split("src=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next());
                let src = src.unwrap_or_else(|| panic!("an inline script: <script{tag}>"));
                let file = src
                    .strip_prefix(PAGE_SCRIPT_PREFIX)
                    .expect("served from /assets/");
                page_script(file).unwrap_or_else(|| panic!("{src} is not served"))
            })
            .collect()
    }

    /// A page's text followed by the text of every script it loads.
    fn page_with_scripts(page: Asset) -> String {
        std::iter::once(page)
            .chain(scripts_of(page))
            .map(|asset| std::str::from_utf8(asset.body).expect("UTF-8"))
            .collect()
    }

    #[test]
    fn pages_load_the_shared_script_then_their_own() {
        assert_eq!(
            scripts_of(index_page()),
            [page_script("page.js"), page_script("index.js")].map(Option::unwrap)
        );
        assert_eq!(
            scripts_of(admin_page()),
            [page_script("page.js"), page_script("admin.js")].map(Option::unwrap)
        );
        for page in [index_page(), admin_page()] {
            let text = std::str::from_utf8(page.body).expect("UTF-8");
            assert!(
                text.contains(
                    "content=\"default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self';"
                ),
                "a page lacks the Content-Security-Policy that allows only the server's scripts"
            );
        }
        for file in ["page.js", "index.js", "admin.js"] {
            let text = std::str::from_utf8(page_script(file).expect("served").body).expect("UTF-8");
            for outside in ["http://", "https://", "//cdn"] {
                assert!(!text.contains(outside), "{file} refers to {outside}");
            }
        }
        let script = page_script("/page.js").expect("a leading / is ignored");
        assert!(script.content_type.starts_with("text/javascript"));
        for name in [
            "",
            "..",
            "../index.html",
            "page.js.map",
            "PAGE.JS",
            "redoc.standalone.js",
        ] {
            assert!(page_script(name).is_none(), "{name}");
        }
    }

    #[test]
    fn index_page_keeps_the_hooks_of_api_md() {
        let text = page_with_scripts(index_page());
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

    fn assert_no_markup_sink(page: &str, asset: Asset) {
        let text = page_with_scripts(asset);
        for sink in MARKUP_SINKS {
            assert!(!text.contains(sink), "{page} uses {sink}");
        }
    }

    #[test]
    fn index_page_never_turns_data_into_markup() {
        assert_no_markup_sink("index.html", index_page());
    }

    #[test]
    fn admin_page_keeps_its_hooks() {
        let text = page_with_scripts(admin_page());
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
    /// is set with `textContent` (or an attribute), never as markup (the CSP
    /// both share: `pages_load_the_shared_script_then_their_own`).
    #[test]
    fn admin_page_never_turns_data_into_markup() {
        assert_no_markup_sink("admin.html", admin_page());
    }

    /// The exports need the operator's token: the page sends it in the
    /// `Authorization` header, never in a URL.
    #[test]
    fn admin_page_never_puts_the_token_in_a_url() {
        let text = page_with_scripts(admin_page());
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
