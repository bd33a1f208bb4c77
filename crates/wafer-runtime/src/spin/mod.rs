//! Spin's interfaces (`fermyon:spin/*@2.0.0` for WASI 0.2 components, `spin:*@3.x` for
//! WASI 0.3 ones; the WIT in `wit/deps/spin*`), answered through the same host calls as
//! Wafer's own ([`interfaces`](crate::interfaces)), with Spin's errors:
//!
//! - `key-value`: `store.open(label)` opens a store granted by label (`kv:LABEL` host calls;
//!   `default` is `kv`), and answers `access-denied` for one not granted, as Spin does.
//! - `sqlite`: `connection.open(label)` opens a database granted by label (`sqlite:LABEL`
//!   host calls), `access-denied` for one not granted; statements run on the host's SQLite.
//! - `variables`: `get(name)` reads the function's config values and secrets, which `wafer
//!   up` makes of the component's `variables`; names follow Spin's rules.
//!
//! A component may import any other Spin interface (an SDK links them all): it links, and a
//! call of it fails naming it ([`stub_unknown`]).

use std::sync::Arc;

use wasmtime::component::{
    Accessor, Component, FutureReader, HasData, Linker, Resource, StreamReader,
};

use crate::host_call::HostCalls;

mod sqlite;
use crate::interfaces::{Bucket, Capabilities, HasCapabilities, Host, Refused};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "wafer:platform/spin",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": crate::interfaces::Bucket,
            "fermyon:spin/sqlite.connection": super::sqlite::Connection,
        },
    });
}

use bindings::fermyon::spin::{key_value, variables};

/// Spin 3's interfaces, for WASI 0.3 components: the same calls as async functions.
mod p3 {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "wafer:platform/spin-p3",
        imports: { default: async | trappable },
        with: {
            "spin:key-value/key-value.store": crate::interfaces::Bucket,
            "spin:sqlite/sqlite.connection": super::sqlite::Connection,
        },
    });
}

use p3::spin::key_value::key_value as key_value3;
use p3::spin::variables::variables as variables3;

pub(crate) struct View;

impl HasData for View {
    type Data<'a> = Capabilities<'a>;
}

/// Adds the Spin interfaces Wafer answers to a component linker.
pub(crate) fn add_to_linker<T: HasCapabilities>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    fn get<T: HasCapabilities>(state: &mut T) -> Capabilities<'_> {
        state.capabilities()
    }
    key_value::add_to_linker::<T, View>(linker, get::<T>)?;
    variables::add_to_linker::<T, View>(linker, get::<T>)?;
    key_value3::add_to_linker::<T, View>(linker, get::<T>)?;
    variables3::add_to_linker::<T, View>(linker, get::<T>)?;
    bindings::fermyon::spin::sqlite::add_to_linker::<T, View>(linker, get::<T>)?;
    p3::spin::sqlite::sqlite::add_to_linker::<T, View>(linker, get::<T>)?;
    Ok(())
}

/// The packages that mark a component built for Spin.
const SPIN_PACKAGES: &[&str] = &["fermyon:spin/", "spin:"];

/// For a component built for Spin (one importing any of Spin's interfaces): `linker` with
/// every import it lacks defined as failing when called, with wasmtime's `unknown import:
/// `IFACE#FUNC` has not been defined`. A Spin SDK links its whole platform world, so an app
/// deploys whatever it leaves uncalled, as on Spin. `None` for any other component, whose
/// unknown imports are refused at deploy.
pub(crate) fn stub_unknown<T: 'static>(
    linker: &Linker<T>,
    component: &Component,
) -> Option<Linker<T>> {
    let spin = component
        .component_type()
        .imports(linker.engine())
        .any(|(name, _)| {
            SPIN_PACKAGES
                .iter()
                .any(|package| name.starts_with(package))
        });
    if !spin {
        return None;
    }
    let mut linker = linker.clone();
    linker.define_unknown_imports_as_traps(component).ok()?;
    Some(linker)
}

impl From<Refused> for key_value::Error {
    fn from(refused: Refused) -> Self {
        match refused.code() {
            "denied" => Self::AccessDenied,
            _ => Self::Other(refused.0),
        }
    }
}

impl key_value::Host for Capabilities<'_> {}

impl key_value::HostStore for Capabilities<'_> {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, key_value::Error>> {
        let bucket = Bucket::labelled(&label);
        match self.host().call(&bucket.namespace, "open", b"").await {
            Ok(_) => Ok(Ok(self.table.push(bucket)?)),
            Err(refused) => Ok(Err(refused.into())),
        }
    }

    async fn get(
        &mut self,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value::Error>> {
        let store = self.store(&store)?;
        Ok(self.host().kv_get(&store, &key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        store: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.store(&store)?;
        Ok(self
            .host()
            .kv_set(&store, &key, &value)
            .await
            .map_err(Into::into))
    }

    async fn delete(
        &mut self,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value::Error>> {
        let store = self.store(&store)?;
        Ok(self
            .host()
            .kv_delete(&store, &key)
            .await
            .map_err(Into::into))
    }

    async fn exists(
        &mut self,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value::Error>> {
        let store = self.store(&store)?;
        let value = self.host().kv_get(&store, &key).await;
        Ok(value.map(|value| value.is_some()).map_err(Into::into))
    }

    async fn get_keys(
        &mut self,
        store: Resource<Bucket>,
    ) -> wasmtime::Result<Result<Vec<String>, key_value::Error>> {
        let store = self.store(&store)?;
        Ok(self.host().kv_keys(&store).await.map_err(Into::into))
    }

    async fn drop(&mut self, store: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

/// Spin's rule for variable names: lower-case ASCII letters, digits and `_`, starting with
/// a letter, no `__`, not ending in `_`.
fn valid_variable(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.contains("__")
        && !name.ends_with('_')
}

impl variables::Host for Capabilities<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, variables::Error>> {
        if !valid_variable(&name) {
            return Ok(Err(variables::Error::InvalidName(invalid_name(&name))));
        }
        Ok(match self.host().config_get(&name).await {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(variables::Error::Undefined(undefined(&name))),
            Err(reason) => Err(variables::Error::Provider(reason)),
        })
    }
}

/// The host of a WASI 0.3 call, taken out of the store so that the call can await it.
pub(crate) fn host_of<T: HasCapabilities>(
    accessor: &Accessor<T, View>,
) -> Option<Arc<dyn HostCalls>> {
    accessor.with(|mut access| access.get().host.cloned())
}

/// One host call of a WASI 0.3 component.
pub(crate) async fn call3<T: HasCapabilities>(
    accessor: &Accessor<T, View>,
    namespace: &str,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, Refused> {
    let host = host_of(accessor);
    Host(host.as_ref())
        .call(namespace, operation, payload)
        .await
}

/// The host-call namespace of an open store of a WASI 0.3 component.
fn store3<T: HasCapabilities>(
    accessor: &Accessor<T, View>,
    store: &Resource<Bucket>,
) -> wasmtime::Result<String> {
    accessor.with(|mut access| access.get().store(store))
}

impl From<Refused> for key_value3::Error {
    fn from(refused: Refused) -> Self {
        match refused.code() {
            "denied" => Self::AccessDenied,
            _ => Self::Other(refused.0),
        }
    }
}

impl key_value3::Host for Capabilities<'_> {}

impl key_value3::HostStore for Capabilities<'_> {
    async fn drop(&mut self, store: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl<T: HasCapabilities> key_value3::HostStoreWithStore<T> for View {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, key_value3::Error>> {
        let bucket = Bucket::labelled(&label);
        if let Err(refused) = call3(accessor, &bucket.namespace, "open", b"").await {
            return Ok(Err(refused.into()));
        }
        let pushed = accessor.with(|mut access| access.get().table.push(bucket))?;
        Ok(Ok(pushed))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, key_value3::Error>> {
        let store = store3(accessor, &store)?;
        let host = host_of(accessor);
        Ok(Host(host.as_ref())
            .kv_get(&store, &key)
            .await
            .map_err(Into::into))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), key_value3::Error>> {
        let store = store3(accessor, &store)?;
        let host = host_of(accessor);
        let set = Host(host.as_ref()).kv_set(&store, &key, &value).await;
        Ok(set.map_err(Into::into))
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), key_value3::Error>> {
        let store = store3(accessor, &store)?;
        let host = host_of(accessor);
        let deleted = Host(host.as_ref()).kv_delete(&store, &key).await;
        Ok(deleted.map_err(Into::into))
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, key_value3::Error>> {
        let store = store3(accessor, &store)?;
        let host = host_of(accessor);
        let value = Host(host.as_ref()).kv_get(&store, &key).await;
        Ok(value.map(|value| value.is_some()).map_err(Into::into))
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Resource<Bucket>,
    ) -> wasmtime::Result<(
        StreamReader<String>,
        FutureReader<Result<(), key_value3::Error>>,
    )> {
        let store = store3(accessor, &store)?;
        let host = host_of(accessor);
        let (keys, result) = match Host(host.as_ref()).kv_keys(&store).await {
            Ok(keys) => (keys, Ok(())),
            Err(refused) => (Vec::new(), Err(refused.into())),
        };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let result =
                FutureReader::new(&mut access, async move { Ok::<_, wasmtime::Error>(result) })?;
            Ok((keys, result))
        })
    }
}

impl variables3::Host for Capabilities<'_> {}

impl<T: HasCapabilities> variables3::HostWithStore<T> for View {
    async fn get(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, variables3::Error>> {
        if !valid_variable(&name) {
            return Ok(Err(variables3::Error::InvalidName(invalid_name(&name))));
        }
        let host = host_of(accessor);
        Ok(match Host(host.as_ref()).config_get(&name).await {
            Ok(Some(value)) => Ok(value),
            Ok(None) => Err(variables3::Error::Undefined(undefined(&name))),
            Err(reason) => Err(variables3::Error::Provider(reason)),
        })
    }
}

fn invalid_name(name: &str) -> String {
    format!(
        "`{name}`: a variable name has lower-case letters, digits and single `_` between \
         them, and starts with a letter"
    )
}

fn undefined(name: &str) -> String {
    format!("no variable `{name}` in the component's `variables`")
}

#[cfg(test)]
mod tests {
    use super::valid_variable;

    #[test]
    fn variable_names_follow_spins_rules() {
        for good in ["a", "api_key", "v2", "a_b_c"] {
            assert!(valid_variable(good), "{good}");
        }
        for bad in ["", "A", "2a", "_a", "a_", "a__b", "a-b", "api.key"] {
            assert!(!valid_variable(bad), "{bad}");
        }
    }
}
