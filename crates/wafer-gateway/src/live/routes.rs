//! The route table: request path -> function, in a handful of hash lookups whatever the number
//! of functions.

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

/// Exact routes and wildcard prefixes, each keyed by path. Persistent maps: a copy costs
/// nothing and a change touches only the changed function's routes, so a deploy costs the
/// same whatever the number of functions.
#[derive(Default, Clone)]
pub(crate) struct RouteTable {
    exact: imbl::HashMap<String, Target>,
    prefix: imbl::HashMap<String, Target>,
}

impl RouteTable {
    /// A table of `functions`, refusing two functions on one route.
    pub(crate) fn build<'a>(
        functions: impl IntoIterator<Item = &'a Arc<Function>>,
    ) -> Result<Self, RegistryError> {
        let mut table = Self::default();
        for function in functions {
            table.insert(function, None)?;
        }
        Ok(table)
    }

    fn map(&mut self, wildcard: bool) -> &mut imbl::HashMap<String, Target> {
        if wildcard {
            &mut self.prefix
        } else {
            &mut self.exact
        }
    }

    /// Serves `function`'s routes in place of those of `previous` (the version it replaces).
    /// Refused, leaving the table as it was, if another function holds one of the routes.
    pub(crate) fn insert(
        &mut self,
        function: &Arc<Function>,
        previous: Option<&Function>,
    ) -> Result<(), RegistryError> {
        for route in function.routes() {
            let (path, wildcard) = route.pattern();
            if let Some(owner) = self.map(wildcard).get(path) {
                if owner.function.name != function.name {
                    return Err(RegistryError::RouteTaken {
                        route: route.to_string(),
                        owner: owner.function.name.to_string(),
                    });
                }
            }
        }
        if let Some(previous) = previous {
            self.remove(previous);
        }
        for (index, route) in function.routes().enumerate() {
            let (path, wildcard) = route.pattern();
            let target = Target {
                function: function.clone(),
                route: index,
            };
            self.map(wildcard).insert(path.to_owned(), target);
        }
        Ok(())
    }

    /// Stops serving `function`'s routes (those it holds; a route another function holds
    /// stays).
    pub(crate) fn remove(&mut self, function: &Function) {
        for route in function.routes() {
            let (path, wildcard) = route.pattern();
            let map = self.map(wildcard);
            if map
                .get(path)
                .is_some_and(|owner| owner.function.name == function.name)
            {
                map.remove(path);
            }
        }
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
