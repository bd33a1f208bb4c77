//! WAGI's module-declared routes, engine side: run a CGI module's `_routes` export at deploy,
//! and give each declared route the program that runs its handler export. (The routes
//! themselves, and how they sit under the function's routes, are the registry's:
//! [`wafer_registry::ModuleRoute`].)

use wafer_registry::{parse_module_routes, ModuleRoute, RegistryError, Route, ROUTES_EXPORT};
use wafer_runtime::{Abi, CallOptions, CgiRequest, CompileError, Limits, Program};

use crate::error::excerpt;
use crate::error::Error;

/// Runs `program`'s `_routes` export, if it is a CGI program with one, within `limits` and
/// with no grants, and parses what it printed.
pub(crate) async fn run(program: &Program, limits: Limits) -> Result<Vec<ModuleRoute>, Error> {
    if program.abi() != Abi::Cgi || !program.exports_function(ROUTES_EXPORT) {
        return Ok(Vec::new());
    }
    let fail = |why: String| Err(RegistryError::ModuleRoutes(why).into());
    let lister = program.clone().with_entrypoint(ROUTES_EXPORT, true)?;
    let request = CgiRequest {
        args: vec![ROUTES_EXPORT.to_owned()],
        ..CgiRequest::default()
    };
    let options = CallOptions::new(limits);
    let output = lister.run_cgi(request, &options).await;
    let said = || {
        let log = output.log.trim_ascii();
        if log.is_empty() {
            String::new()
        } else {
            format!(" (it wrote: {})", excerpt(log))
        }
    };
    match output.exit {
        Ok(0) => Ok(parse_module_routes(&output.stdout)?),
        Ok(code) => fail(format!("it exited with code {code}{}", said())),
        Err(fault) => fail(format!("{fault}{}", said())),
    }
}

/// The programs serving `routes` under each of `bases` (the function's configured routes):
/// each runs its route's handler export as the CGI entrypoint.
pub(crate) fn handlers(
    program: &Program,
    bases: &[Route],
    routes: &[ModuleRoute],
) -> Result<Vec<(Route, Program)>, RegistryError> {
    let mut handlers = Vec::with_capacity(bases.len() * routes.len());
    for route in routes {
        let handler = program
            .clone()
            .with_entrypoint(&route.handler, true)
            .map_err(|e| {
                let why = match e {
                    CompileError::Unsupported(why) => why,
                    other => other.to_string(),
                };
                RegistryError::ModuleRoutes(format!("route `{}`: {why}", route.route))
            })?;
        for base in bases {
            handlers.push((route.under(base)?, handler.clone()));
        }
    }
    Ok(handlers)
}
