//! A CGI module that declares its own routes, as WAGI modules do: the `_routes` export prints
//! one `ROUTE EXPORT` line per sub-route, and Wafer serves each under the function's route,
//! running that export instead of `main`. Deployed as `routes-rust`, it answers:
//!
//! - `/routes-rust/...`      `main`: the index, listing the others
//! - `/routes-rust/time`     `time`: seconds since the Unix epoch
//! - `/routes-rust/echo/...` `echo`: the route that matched and the rest of the path

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints a plain-text CGI response.
fn reply(body: &str) {
    let mut out = std::io::stdout().lock();
    write!(out, "Content-Type: text/plain\n\n{body}\n").expect("write to stdout");
}

fn main() {
    reply("routes: /time, /echo/...");
}

/// Lists the module's routes; Wafer calls it once, at deploy.
#[no_mangle]
pub extern "C" fn _routes() {
    println!("/time time");
    println!("/echo/... echo");
}

#[no_mangle]
pub extern "C" fn time() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    reply(&now.as_secs().to_string());
}

#[no_mangle]
pub extern "C" fn echo() {
    let var = |name| std::env::var(name).unwrap_or_default();
    reply(&format!(
        "route: {}, path: {}",
        var("X_MATCHED_ROUTE"),
        var("PATH_INFO")
    ));
}
