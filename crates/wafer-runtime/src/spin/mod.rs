//! Spin's interfaces (`fermyon:spin/*@2.0.0` for WASI 0.2 components, `spin:*@3.x` for
//! WASI 0.3 ones; the WIT in `wit/deps/spin*`), answered through the same host calls as
//! Wafer's own ([`interfaces`](crate::interfaces)), with Spin's errors:
//!
//! - `key-value`: `store.open(label)` opens a store granted by label (`kv:LABEL` host calls;
//!   `default` is `kv`), and answers `access-denied` for one not granted, as Spin does.
//! - `sqlite`: `connection.open(label)` opens a database granted by label (`sqlite:LABEL`
//!   host calls), `access-denied` for one not granted; statements run on the host's SQLite.
//! - `postgres`: `connection.open(address)` connects to a PostgreSQL server the outbound
//!   allow-list grants (`postgres` host calls), one connection per resource; statements
//!   and values as in Spin ([`postgres`]).
//! - `redis`, `mqtt`: `connection.open(address, ...)` connects to a server the function's
//!   outbound rules allow (`redis` and `mqtt` host calls; the host checks the address,
//!   connects, and keeps the connection for later calls); a refused address is Spin's
//!   `invalid-address` (Redis) or `connection-failed("address ... is not permitted")` (MQTT).
//! - `variables`: `get(name)` reads the function's config values and secrets, which `wafer
//!   up` makes of the component's `variables`; names follow Spin's rules.
//!
//! A component may import any other Spin interface (an SDK links them all): it links, and a
//! call of it fails naming it ([`stub_unknown`]).

use std::sync::Arc;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{
    Accessor, Component, FutureReader, HasData, Linker, Resource, StreamReader,
};

use crate::host_call::HostCalls;

mod mqtt;
mod postgres;
mod redis;
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
            "fermyon:spin/postgres.connection": super::postgres::Connection,
            "spin:postgres/postgres@3.0.0.connection": super::postgres::Connection,
            "fermyon:spin/redis.connection": super::redis::Connection,
            "fermyon:spin/mqtt.connection": super::mqtt::Connection,
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
            "spin:postgres/postgres@4.2.0.connection": super::postgres::Connection,
            "spin:postgres/postgres@4.2.0.connection-builder": super::postgres::Builder,
            "spin:redis/redis.connection": super::redis::Connection,
            "spin:mqtt/mqtt.connection": super::mqtt::Connection,
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
    postgres::add_to_linker::<T>(linker, get::<T>)?;
    bindings::fermyon::spin::redis::add_to_linker::<T, View>(linker, get::<T>)?;
    p3::spin::redis::redis::add_to_linker::<T, View>(linker, get::<T>)?;
    bindings::fermyon::spin::mqtt::add_to_linker::<T, View>(linker, get::<T>)?;
    p3::spin::mqtt::mqtt::add_to_linker::<T, View>(linker, get::<T>)?;
    Ok(())
}

/// The packages that mark a component built for Spin.
const SPIN_PACKAGES: &[&str] = &["fermyon:spin/", "spin:"];

/// For a component built for Spin (one importing any of Spin's interfaces): `linker` with
/// each import it lacks that a Spin SDK links for its whole platform world (Spin's own
/// interfaces, and prerelease versions such as `wasi:http/types@0.3.0-rc-2026-03-15`)
/// defined as failing when called: `Wafer does not implement IFACE#FUNC`. So an app
/// deploys whatever it leaves uncalled, as on Spin. `None` for any other component, or
/// when something else is missing, refused at deploy as for any component.
pub(crate) fn stub_unknown<T: 'static>(
    linker: &Linker<T>,
    component: &Component,
) -> Option<Linker<T>> {
    let engine = linker.engine().clone();
    let imports: Vec<(String, ComponentItem)> = component
        .component_type()
        .imports(&engine)
        .map(|(name, item)| (name.to_owned(), item.ty))
        .collect();
    let spin = imports.iter().any(|(name, _)| {
        SPIN_PACKAGES
            .iter()
            .any(|package| name.starts_with(package))
    });
    if !spin {
        return None;
    }
    let mut linker = linker.clone();
    // The linker names the first import it cannot satisfy; stub it and look again.
    for _ in 0..=imports.len() {
        let Err(e) = linker.substituted_component_type(component) else {
            return Some(linker);
        };
        let message = e.to_string();
        let missing = message.split('`').nth(1)?;
        let stubbable = SPIN_PACKAGES.iter().any(|p| missing.starts_with(p))
            || missing
                .split_once('@')
                .is_some_and(|(_, version)| version.contains('-'));
        let (name, ComponentItem::ComponentInstance(instance)) =
            imports.iter().find(|(name, _)| name == missing)?
        else {
            return None;
        };
        if !stubbable {
            return None;
        }
        stub_instance(&mut linker, name, instance, &engine).ok()?;
    }
    None
}

/// A host resource standing for a resource of an interface Wafer does not implement.
struct Unimplemented;

/// Defines every function of the import `name` as failing, naming itself.
fn stub_instance<T: 'static>(
    linker: &mut Linker<T>,
    name: &str,
    instance: &wasmtime::component::types::ComponentInstance,
    engine: &wasmtime::Engine,
) -> wasmtime::Result<()> {
    let mut stubs = linker.instance(name)?;
    for (export, item) in instance.exports(engine) {
        let label = format!("Wafer does not implement `{name}#{export}`");
        match item.ty {
            ComponentItem::ComponentFunc(func) if func.async_() => {
                stubs.func_new_concurrent(export, move |_, _, _, _| {
                    let label = label.clone();
                    Box::pin(async move { Err(wasmtime::Error::msg(label)) })
                })?
            }
            ComponentItem::ComponentFunc(_) => stubs.func_new(export, move |_, _, _, _| {
                Err(wasmtime::Error::msg(label.clone()))
            })?,
            ComponentItem::Resource(_) => stubs.resource(
                export,
                wasmtime::component::ResourceType::host::<Unimplemented>(),
                |_, _| Ok(()),
            )?,
            _ => {}
        }
    }
    Ok(())
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
