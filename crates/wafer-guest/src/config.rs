//! Config values and secrets, granted with `config` / `secrets`. Both are read the same way;
//! secrets never appear in logs or error messages.

use crate::Error;

/// The config value or secret `name`; a `not_found` error if there is none.
pub fn get(name: &str) -> Result<String, Error> {
    let value = crate::host_call("config", "get", name.as_bytes())?;
    String::from_utf8(value)
        .map_err(|_| Error::failed(format_args!("config value {name:?} is not UTF-8")))
}

/// Like [`get`], but `Ok(None)` when there is no such value.
pub fn get_opt(name: &str) -> Result<Option<String>, Error> {
    crate::optional(get(name))
}
