//! An OTLP gRPC trace receiver that counts the spans it is sent: what a traced server
//! exports to while `scripts/bench.sh` measures the cost of tracing.
//!
//! Usage: `wafer-bench otlp-sink PORT COUNT_FILE`. Listens on `127.0.0.1:PORT`; after each
//! export, writes the number of spans received so far to `COUNT_FILE`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};

struct Sink {
    spans: AtomicU64,
    count_file: PathBuf,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = (request.into_inner().resource_spans.iter())
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let total = self.spans.fetch_add(spans as u64, Ordering::Relaxed) + spans as u64;
        if let Err(e) = std::fs::write(&self.count_file, format!("{total}\n")) {
            eprintln!("otlp-sink: cannot write {}: {e}", self.count_file.display());
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

pub(crate) async fn run(args: &[String]) -> anyhow::Result<()> {
    let [port, count_file] = args else {
        anyhow::bail!("usage: wafer-bench otlp-sink PORT COUNT_FILE");
    };
    let port: u16 = port.parse().context("PORT")?;
    let sink = Sink {
        spans: AtomicU64::new(0),
        count_file: count_file.into(),
    };
    std::fs::write(&sink.count_file, "0\n")?;
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(sink))
        .serve(([127, 0, 0, 1], port).into())
        .await
        .context("otlp-sink")
}
