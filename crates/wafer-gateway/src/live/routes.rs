//! The route table: request path -> function, in a handful of hash lookups whatever the number
//! of functions.

use std::collections::HashMap;
use std::sync::Arc;

use wafer_registry::{RegistryError, Route};
use wafer_runtime::Program;

use super::function::Function;

/// A request path resolved to a function.
#[derive(Clone)]
pub struct Resolved {
    /// The function (its active version when the request arrived).
    pub function: Arc<Function>,
    /// Index of the matched route in [`Function::routes`].
    pub route: usize,
    /// Length of the path prefix the route matched (the CGI `SCRIPT_NAME`); the rest of the
    /// path is `PATH_INFO`.
    pub script_name_len: usize,
}

#[derive(Clone)]
struct Target {
    function: Arc<Function>,
    route: usize,
}

/// Exact routes and wildcard prefixes, each keyed by path.
#[derive(Default, Clone)]
pub(crate) struct RouteTable {
    exact: HashMap<String, Target>,
    prefix: HashMap<String, Target>,
}

impl RouteTable {
    /// Builds the table for `functions`, refusing two functions on one route.
    pub(crate) fn build<'a>(
        functions: impl IntoIterator<Item = &'a Arc<Function>>,
    ) -> Result<Self, RegistryError> {
        let mut table = Self::default();
        for function in functions {
            for (index, route) in function.routes().enumerate() {
                let (path, wildcard) = route.pattern();
                let map = if wildcard {
                    &mut table.prefix
                } else {
                    &mut table.exact
                };
                let target = Target {
                    function: function.clone(),
                    route: index,
                };
                if let Some(previous) = map.insert(path.to_owned(), target) {
                    if previous.function.name != function.name {
                        return Err(RegistryError::RouteTaken {
                            route: route.to_string(),
                            owner: previous.function.name.to_string(),
                        });
                    }
                }
            }
        }
        Ok(table)
    }

    /// Finds the function for `path` (the raw, still percent-encoded request path): an exact
    /// route first, then the longest wildcard prefix ending at a segment boundary.
    pub(crate) fn resolve(&self, path: &str) -> Option<Resolved> {
        if let Some(t) = self.exact.get(path) {
            return Some(t.resolved(path.len()));
        }
        let mut end = path.len();
        loop {
            let candidate = &path[..end];
            if let Some(t) = self.prefix.get(candidate) {
                return Some(t.resolved(end));
            }
            if end == 0 {
                return None;
            }
            end = candidate.rfind('/').unwrap_or(0);
        }
    }
}

impl Resolved {
    /// The route that matched.
    pub fn route(&self) -> &Route {
        self.function.route(self.route)
    }

    /// The program that handles the matched route (a module-declared route runs its own
    /// export), or why the function cannot run.
    pub fn program(&self) -> Result<&Program, &str> {
        self.function.handler(self.route)
    }
}

impl Target {
    fn resolved(&self, script_name_len: usize) -> Resolved {
        Resolved {
            function: self.function.clone(),
            route: self.route,
            script_name_len,
        }
    }
}
