//! Host calls of every namespace (config, kv, http, pubsub) through the real
//! `Capabilities::call` (wafer-host), with a key-value store in a temporary directory.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wafer_host::fuzzing::HostCalls;

fn host() -> &'static HostCalls {
    static HOST: OnceLock<HostCalls> = OnceLock::new();
    HOST.get_or_init(|| {
        // Preferably in memory: every key-value write is a durable transaction.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .expect("a temporary directory");
        let host = HostCalls::new(dir.path());
        // The store works on its open file from now on; nothing is left behind at exit.
        drop(dir);
        host
    })
}

fuzz_target!(|data: &[u8]| host().check(data));
