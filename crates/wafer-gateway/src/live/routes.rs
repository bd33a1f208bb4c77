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

/// Exact routes and wildcard prefixes, each keyed by path, and routes with parameters
/// (`/users/:id/...`) keyed by their shape (`/users/:/...`). Persistent maps: a copy costs
/// nothing and a change touches only the changed function's routes, so a deploy costs the
/// same whatever the number of functions.
#[derive(Default, Clone)]
pub(crate) struct RouteTable {
    exact: imbl::HashMap<String, Target>,
    prefix: imbl::HashMap<String, Target>,
    params: imbl::HashMap<String, Target>,
}

/// Where a route goes in the table: its map and key.
fn slot(route: &Route) -> (Kind, String) {
    if route.has_params() {
        let shape: Vec<&str> = route
            .as_str()
            .split('/')
            .map(|segment| {
                if segment.starts_with(':') {
                    ":"
                } else {
                    segment
                }
            })
            .collect();
        return (Kind::Params, shape.join("/"));
    }
    match route.pattern() {
        (path, true) => (Kind::Prefix, path.to_owned()),
        (path, false) => (Kind::Exact, path.to_owned()),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Exact,
    Prefix,
    Params,
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

    fn map(&mut self, kind: Kind) -> &mut imbl::HashMap<String, Target> {
        match kind {
            Kind::Exact => &mut self.exact,
            Kind::Prefix => &mut self.prefix,
            Kind::Params => &mut self.params,
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
            let (kind, key) = slot(route);
            if let Some(owner) = self.map(kind).get(&key) {
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
            let (kind, key) = slot(route);
            let target = Target {
                function: function.clone(),
                route: index,
            };
            self.map(kind).insert(key, target);
        }
        Ok(())
    }

    /// Stops serving `function`'s routes (those it holds; a route another function holds
    /// stays).
    pub(crate) fn remove(&mut self, function: &Function) {
        for route in function.routes() {
            let (kind, key) = slot(route);
            let map = self.map(kind);
            if map
                .get(&key)
                .is_some_and(|owner| owner.function.name == function.name)
            {
                map.remove(&key);
            }
        }
    }

    /// Finds the function for `path` (the raw, still percent-encoded request path): an exact
    /// route first, then the longest wildcard prefix ending at a segment boundary.
    ///
    /// Routes with parameters compete with the wildcard: the route whose segments match
    /// more of the path wins; at equal length, one without a wildcard, then the wildcard
    /// prefix (all literal) before parameters.
    pub(crate) fn resolve(&self, path: &str) -> Option<Resolved> {
        if let Some(t) = self.exact.get(path) {
            return Some(t.resolved(path.len()));
        }
        let prefix = self.longest_prefix(path);
        if self.params.is_empty() {
            return prefix;
        }
        let mut best = prefix.map(|r| (r.script_name_len, r));
        for target in self.params.values() {
            let route = target.function.route(target.route);
            let Some((taken, _)) = route.match_params(path) else {
                continue;
            };
            let exact = !route.pattern().1;
            let better = match &best {
                None => true,
                Some((len, current)) => {
                    let current_exact = !current.route().pattern().1;
                    taken > *len || (taken == *len && exact && !current_exact)
                }
            };
            if better {
                best = Some((taken, target.resolved(taken)));
            }
        }
        best.map(|(_, resolved)| resolved)
    }

    /// The longest wildcard prefix of `path` ending at a segment boundary.
    fn longest_prefix(&self, path: &str) -> Option<Resolved> {
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
