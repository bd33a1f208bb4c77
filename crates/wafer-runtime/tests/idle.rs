//! The epoch ticker sleeps while no guest runs, and wakes for the next one: a guest that
//! spins after a quiet spell is still stopped at its time limit.
//!
//! A test binary of its own: the ticker's state is process-wide, and tests running beside
//! these would keep it awake.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use wafer_runtime::{CallError, CallOptions, Fault, Limits, Runtime, RuntimeConfig};

fn exports(runtime: &Runtime) -> wafer_runtime::Program {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/wasm/exports-rust.wasm");
    let wasm = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example guests first: bash examples/build.sh",
            path.display()
        )
    });
    runtime.compile(&wasm).unwrap().program
}

/// Context switches the process's `wafer-epoch` thread has made: a ticking thread makes one
/// per tick (a thousand a second); a parked one none.
fn ticker_switches() -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if comm.trim() == "wafer-epoch" {
            let status = std::fs::read_to_string(task.join("status")).unwrap();
            return status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .map(|l| l.split_whitespace().last().unwrap().parse::<u64>().unwrap())
                .sum();
        }
    }
    panic!("no wafer-epoch thread in this process");
}

#[tokio::test]
async fn the_ticker_sleeps_while_idle_and_wakes_for_a_spinning_guest() {
    // Were the ticker not woken, the spinning guest below would never be interrupted and the
    // test would hang: fail it instead.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        eprintln!("a spinning guest was not stopped within 60 s: the epoch ticker stayed asleep");
        std::process::exit(1);
    });
    let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
    let program = exports(&runtime);
    let quick = CallOptions::new(Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    });

    for round in 0..3 {
        // Idle: once it has lingered, the ticker is parked and stays so.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(wafer_runtime::running_guests(), 0);
        let before = ticker_switches();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = ticker_switches() - before;
        assert!(
            idle < 10,
            "round {round}: the idle ticker woke {idle} times in 500 ms (a ticking one wakes ~500)"
        );

        // Busy: it ticks while a guest runs, so the loop ends at the limit.
        let before = ticker_switches();
        let err = program.call::<_, ()>(&quick, "spin", ()).await.unwrap_err();
        assert_eq!(
            err,
            CallError::Fault(Fault::Timeout(Duration::from_millis(200)))
        );
        assert!(
            ticker_switches() - before >= 10,
            "round {round}: the ticker did not tick while the guest ran"
        );
        let sum: i32 = program.call(&quick, "sum", (2, 3)).await.unwrap();
        assert_eq!(sum, 5);
        assert_eq!(
            wafer_runtime::running_guests(),
            0,
            "a guard outlived its call"
        );
    }
}
