//! Services: WASI 0.2 command components (`wasi:cli/run`) that run for as long as they like
//! and accept TCP connections on one granted address through `wasi:sockets`.
//!
//! The component may bind and listen on exactly that address and accept any client; every
//! other socket use (connecting out, UDP, name lookups, other addresses) is refused by WASI.
//! Its memory is limited as a function's is; it has no time limit, but yields at every epoch
//! tick so it cannot starve the server.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::error::Fault;
use crate::output::{CappedPipe, Overflow};
use crate::sandbox::{describe_trap, MemoryLimiter};
use crate::ticker::Running;
use wafer_abi::Limits;

/// How a service runs: where it listens, its environment and memory limit.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The one address the service may listen on; also given to it as `WAFER_LISTEN`.
    pub listen: SocketAddr,
    /// Environment variables, besides `WAFER_LISTEN`.
    pub env: Vec<(String, String)>,
    /// Memory (and log size per drain); time limits do not apply.
    pub limits: Limits,
}

/// The state of a service instance.
pub struct ServiceCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryLimiter,
}

impl WasiView for ServiceCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A compiled command component, ready to start as a service.
#[derive(Clone)]
pub struct Service {
    pub(crate) pre: CommandPre<ServiceCtx>,
}

/// How often a running service's output is handed to the log callback.
const LOG_DRAIN: Duration = Duration::from_millis(200);

impl Service {
    /// Runs the service until its `run` returns or it traps; its stdout and stderr go to
    /// `log` as they are written (every 200 ms). Returns the exit code (0 for a successful
    /// `run`, 1 for an error result) or the fault.
    pub async fn run(&self, options: &ServiceOptions, log: impl Fn(Bytes)) -> Result<i32, Fault> {
        let limits = &options.limits;
        let output = CappedPipe::new(limits.stderr_bytes(), Overflow::Truncate);
        let listen = options.listen;
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(output.clone())
            .stderr(output.clone())
            .envs(&options.env)
            .env("WAFER_LISTEN", listen.to_string())
            .allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(move |addr, use_| {
                let allowed = match use_ {
                    SocketAddrUse::TcpBind | SocketAddrUse::TcpListen => addr == listen,
                    SocketAddrUse::TcpAccept => true,
                    _ => false,
                };
                Box::pin(async move { allowed })
            });
        let ctx = ServiceCtx {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            memory: MemoryLimiter::new(limits.memory_bytes()),
        };
        let mut store = Store::new(self.pre.engine(), ctx);
        store.limiter(|cx| &mut cx.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));

        let store = &mut store;
        // A service may compute at any time, and yields only at epoch ticks: the ticker runs
        // for its whole life.
        let _running = Running::start();
        let run = async {
            let result = match self.pre.instantiate_async(&mut *store).await {
                Ok(command) => command.wasi_cli_run().call_run(&mut *store).await,
                Err(e) => Err(e),
            };
            (result, store.data().memory.exceeded)
        };
        let mut run = std::pin::pin!(run);
        let mut drain = tokio::time::interval(LOG_DRAIN);
        let (result, out_of_memory) = loop {
            tokio::select! {
                result = &mut run => break result,
                _ = drain.tick() => {
                    let text = output.take();
                    if !text.is_empty() {
                        log(text);
                    }
                }
            }
        };
        let text = output.take();
        if !text.is_empty() {
            log(text);
        }
        match result {
            Ok(Ok(())) => Ok(0),
            Ok(Err(())) => Ok(1),
            Err(e) => {
                if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                    return Ok(exit.0);
                }
                if out_of_memory {
                    return Err(Fault::OutOfMemory(limits.memory));
                }
                Err(Fault::Trap(describe_trap(&e)))
            }
        }
    }
}
