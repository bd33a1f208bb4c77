//! WAGI's module-declared routes: a CGI module that exports `_routes` prints, one per line, a
//! sub-route and the export that handles it (`/hello hello`, `/files/... files`). Each is
//! served under every route of the function's configuration, beside the module's main handler.
//!
//! The gateway runs `_routes` once, at deploy; what it printed, parsed here, is kept in the
//! version's record, so a restart or another node serves the same routes without running it
//! again.

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::names::Route;

/// The export WAGI calls for a module's routes.
pub const ROUTES_EXPORT: &str = "_routes";

/// At most this many routes per module: a route table, not a data dump.
const MAX_ROUTES: usize = 1000;

/// One route a module declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleRoute {
    /// The sub-route as the module printed it (`/hello`, `/goodbye/...`).
    pub route: Route,
    /// The exported function that handles it, run as the CGI entrypoint.
    pub handler: String,
}

impl ModuleRoute {
    /// This route under `base`, one of the function's routes: `/hello` under `/example` or
    /// `/example/...` is `/example/hello`; `/` is the base path itself. The root, `/` or
    /// `/...`, adds nothing: `/hello` under `/` is `/hello` (WAGI serves a module's routes
    /// mounted at `/` that way), never `//hello`.
    pub fn under(&self, base: &Route) -> Result<Route, RegistryError> {
        let (prefix, _) = base.pattern();
        // Only the root route ends in `/` (a route may not otherwise).
        let prefix = prefix.trim_end_matches('/');
        match self.route.as_str() {
            "/" if !prefix.is_empty() => prefix.parse(),
            sub => format!("{prefix}{sub}").parse(),
        }
    }
}

/// Parses `_routes` output: lines of `ROUTE EXPORT`, blank lines skipped.
pub fn parse_module_routes(stdout: &[u8]) -> Result<Vec<ModuleRoute>, RegistryError> {
    let fail = |why: String| Err(RegistryError::ModuleRoutes(why));
    let Ok(text) = std::str::from_utf8(stdout) else {
        return fail("it printed something that is not UTF-8".into());
    };
    let mut routes = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let mut fields = line.split_whitespace();
        let (route, handler) = match (fields.next(), fields.next(), fields.next()) {
            (None, _, _) => continue,
            (Some(route), Some(handler), None) => (route, handler),
            _ => {
                return fail(format!(
                    "line {number} is `{}`; each line must be a route and the export that \
                     handles it, like `/hello hello`",
                    excerpt(line)
                ))
            }
        };
        let route = match route.parse() {
            Ok(route) => route,
            Err(e) => return fail(format!("line {number}: {e}")),
        };
        if routes.len() == MAX_ROUTES {
            return fail(format!("it declared more than {MAX_ROUTES} routes"));
        }
        routes.push(ModuleRoute {
            route,
            handler: handler.to_owned(),
        });
    }
    Ok(routes)
}

/// At most 200 characters of `text`, cut at a character boundary.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn route(sub: &str, base: &str) -> String {
        let module = ModuleRoute {
            route: sub.parse().unwrap(),
            handler: "h".into(),
        };
        module.under(&base.parse().unwrap()).unwrap().to_string()
    }

    #[test]
    fn module_routes_sit_under_each_function_route() {
        assert_eq!(route("/hello", "/example"), "/example/hello");
        assert_eq!(route("/hello", "/example/..."), "/example/hello");
        assert_eq!(route("/goodbye/...", "/example"), "/example/goodbye/...");
        assert_eq!(route("/hello", "/..."), "/hello");
        assert_eq!(route("/", "/example/..."), "/example");
        assert_eq!(route("/", "/..."), "/");
        assert_eq!(route("/...", "/example"), "/example/...");
    }

    #[test]
    fn module_routes_under_the_root_route_are_not_doubled() {
        // Reported: WAGI's dynamic-routes module mounted at `/` was refused as
        // `invalid route //exact`.
        assert_eq!(route("/exact", "/"), "/exact");
        assert_eq!(route("/wildcard/...", "/"), "/wildcard/...");
        assert_eq!(route("/...", "/"), "/...");
        assert_eq!(route("/", "/"), "/");
        assert_eq!(route("/exact", "/..."), "/exact");
        assert_eq!(route("/wildcard/...", "/base/..."), "/base/wildcard/...");
        assert_eq!(route("/exact", "/base/..."), "/base/exact");
    }

    #[test]
    fn output_is_lines_of_route_and_export() {
        let routes =
            parse_module_routes(b"/hello hello\n\n  /goodbye/...\tgoodbye  \r\n/main _start")
                .unwrap();
        let pairs: Vec<(&str, &str)> = routes
            .iter()
            .map(|r| (r.route.as_str(), r.handler.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("/hello", "hello"),
                ("/goodbye/...", "goodbye"),
                ("/main", "_start")
            ]
        );
        assert!(parse_module_routes(b"").unwrap().is_empty());
    }

    #[test]
    fn bad_output_names_the_line() {
        let error = |out: &[u8]| parse_module_routes(out).unwrap_err().to_string();
        assert!(error(b"/ok ok\n/hello\n").contains("line 2 is `/hello`"));
        assert!(error(b"/a b c\n").contains("line 1 is `/a b c`"));
        assert!(error(b"hello hello\n").contains("line 1: invalid route `hello`"));
        assert!(error(b"/_wafer/x x\n").contains("belong to the server"));
        assert!(error(b"\xff x\n").contains("not UTF-8"));
        let many = "/a a\n".repeat(MAX_ROUTES + 1);
        assert!(error(many.as_bytes()).contains("more than 1000 routes"));
    }
}
