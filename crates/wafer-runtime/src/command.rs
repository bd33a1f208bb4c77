//! Command components (`wasi:cli/run`, WASI 0.2 or 0.3) run once, as `wasmtime run` runs
//! them: the host's stdio, the given arguments, environment and directories, the exit code.
//! They are linked against everything an HTTP component may import (WASI 0.2 and 0.3 with
//! `wasi:http`), so a command may build requests and, if allowed, send them.
//!
//! Sockets and outgoing HTTP are denied unless [`CommandOptions::network`] grants the
//! host's network (as `wasmtime run -S inherit-network,http` does). Neither memory nor time
//! is limited: this is the user's own program, run in the foreground.

use std::time::Instant;

use wasmtime::component::{InstancePre, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi_http::WasiHttpCtx;

use crate::cgi::CommandOptions;
use crate::component::{Hooks, HttpCtx};
use crate::output::{CappedPipe, Overflow};
use crate::sandbox::{describe_trap, MemoryLimiter};
use crate::ticker::Running;

/// A compiled command component, of either WASI version.
#[derive(Clone)]
pub(crate) enum Command {
    P2(wasmtime_wasi::p2::bindings::CommandPre<HttpCtx>),
    P3(wasmtime_wasi::p3::bindings::CommandPre<HttpCtx>),
}

impl Command {
    /// The command `pre` exports: WASI 0.3's `wasi:cli/run` if it has it, else 0.2's.
    pub(crate) fn new(pre: &InstancePre<HttpCtx>) -> Option<Self> {
        if let Ok(p3) = wasmtime_wasi::p3::bindings::CommandPre::new(pre.clone()) {
            return Some(Self::P3(p3));
        }
        wasmtime_wasi::p2::bindings::CommandPre::new(pre.clone())
            .ok()
            .map(Self::P2)
    }

    /// Runs the command to its end; returns its exit code: `exit(n)`'s `n`, 0 when `run`
    /// returns `ok`, 1 when it returns `err`. A trap is an error, described.
    pub(crate) async fn run(&self, options: &CommandOptions) -> anyhow::Result<i32> {
        let mut wasi = options.wasi()?;
        if options.network {
            wasi.inherit_network()
                .allow_tcp(true)
                .allow_udp(true)
                .allow_ip_name_lookup(true);
        }
        let engine = match self {
            Self::P2(pre) => pre.engine(),
            Self::P3(pre) => pre.engine(),
        };
        let ctx = HttpCtx {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            host: None,
            hooks: Hooks {
                outbound: None,
                unrestricted: options.network,
                log: CappedPipe::new(0, Overflow::Truncate),
            },
            memory: MemoryLimiter::new(usize::MAX),
            deadline: Instant::now(),
            timed_out: false,
        };
        let mut store = Store::new(engine, ctx);
        store.limiter(|cx| &mut cx.memory);
        // No time limit, but a long computation yields to the runtime at each tick.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
        let _running = Running::start();

        let result = match self {
            Self::P2(pre) => match pre.instantiate_async(&mut store).await {
                Ok(command) => command.wasi_cli_run().call_run(&mut store).await,
                Err(e) => Err(e),
            },
            Self::P3(pre) => match pre.instantiate_async(&mut store).await {
                Ok(command) => store
                    .run_concurrent(async |store| command.wasi_cli_run().call_run(store).await)
                    .await
                    .and_then(|result| result),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(anyhow::anyhow!("{}", describe_trap(&e))),
            },
        }
    }
}
