//! The server's logging and its OpenTelemetry traces (`docs/operations.md#tracing`).
//!
//! Traces are exported over OTLP when an endpoint is configured by the standard variables
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`), with the
//! protocol of `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`,
//! the default, or `http/protobuf`). The SDK reads the rest itself: `OTEL_SERVICE_NAME`
//! and `OTEL_RESOURCE_ATTRIBUTES` (the service is `wafer` unless they name one),
//! `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*` (batching),
//! `OTEL_EXPORTER_OTLP_*_HEADERS`, `_TIMEOUT`, `_COMPRESSION`. With no endpoint there is
//! no exporter, no layer and no span: tracing costs nothing.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// The service name traces carry unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`
/// names one.
const SERVICE_NAME: &str = "wafer";

/// How the server's own log lines are written.
#[derive(Clone, Copy)]
pub(crate) enum Format {
    Text,
    Json,
}

/// The trace exporter while the server runs; [`Telemetry::shutdown`] sends what is left.
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans not sent yet and stops the exporter (within the SDK's timeouts).
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: sending the last trace spans failed: {e}");
            }
        }
    }
}

/// The OTLP transport.
#[derive(Debug, PartialEq, Eq)]
enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// A variable's value, unless unset or blank.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether an OTLP endpoint for traces is configured (and the SDK not disabled with
/// `OTEL_SDK_DISABLED=true`).
fn configured() -> bool {
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return false;
    }
    var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
}

/// The protocol the variables ask for.
fn protocol() -> anyhow::Result<Protocol> {
    let value =
        var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match value.as_deref().map(str::trim) {
        None | Some("grpc") => Ok(Protocol::Grpc),
        Some("http/protobuf") => Ok(Protocol::HttpProtobuf),
        Some(other) => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported: use `grpc` or `http/protobuf`"
        ),
    }
}

/// The exporter's provider, when an endpoint is configured. Call it within the tokio
/// runtime (the gRPC exporter's channel lives there).
fn provider() -> anyhow::Result<Option<SdkTracerProvider>> {
    if !configured() {
        return Ok(None);
    }
    use opentelemetry_otlp::{SpanExporter, WithExportConfig as _};
    let exporter = match protocol()? {
        Protocol::Grpc => SpanExporter::builder().with_tonic().build(),
        Protocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    }
    .context("cannot set up the OTLP trace exporter")?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    let named = var("OTEL_SERVICE_NAME").is_some()
        || var("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    // The batch processor (its own thread, `OTEL_BSP_*`) and the sampler
    // (`OTEL_TRACES_SAMPLER`) come from the environment.
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    Ok(Some(provider))
}

/// Starts the process's logging to stderr (`filter`, in `format`) and, for the server
/// (`traces`) with an OTLP endpoint configured, the trace exporter with its layer. Call it
/// within the tokio runtime.
pub(crate) fn start(filter: &str, format: Format, traces: bool) -> anyhow::Result<Telemetry> {
    let provider = match traces {
        true => provider()?,
        false => None,
    };
    // Wafer's spans are for the exporter; its log lines would carry them as a prefix.
    let filter = format!("{filter},{}=off", wafer_host::trace::TARGET);
    let filter = tracing_subscriber::EnvFilter::new(filter);
    let registry = tracing_subscriber::registry();
    let Some(provider) = provider else {
        // No exporter: the log's filter is the process's, so that what it leaves out (the
        // trace-level spans of wasmtime's WASI calls, say) is never even made.
        return registry
            .with(filter)
            .with(logs(format))
            .try_init()
            .context("cannot start logging")
            .map(|()| Telemetry { provider: None });
    };
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    wafer_host::trace::enable();
    // Wafer's spans, and warnings and errors within them as span events. Its spans are
    // all at level INFO: a filter letting TRACE through would raise the process's level
    // hint to TRACE, and every `log::trace!` in the dependencies (which no callsite cache
    // answers) would be handed to `tracing` to be turned down, at every call.
    let spans = tracing_subscriber::filter::Targets::new()
        .with_target(wafer_host::trace::TARGET, tracing::Level::INFO)
        .with_default(tracing::Level::WARN);
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("wafer"))
        // Attributes are the spans' own: no source locations, threads, targets or
        // busy/idle times (which cost a clock reading at every poll).
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(spans);
    registry
        .with(logs(format).with_filter(filter))
        .with(traces)
        .try_init()
        .context("cannot start logging")?;
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// The layer writing the server's log lines to stderr, in `format`.
fn logs<S>(format: Format) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        Format::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        Format::Json => {
            let with_ids = WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(false),
            );
            logs.json()
                .with_current_span(false)
                .event_format(with_ids)
                .boxed()
        }
    }
}

/// JSON log lines with the `trace_id` and `span_id` of the span they were written in, when
/// it belongs to a trace.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some((trace_id, span_id)) = wafer_host::trace::ids() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_suffix("}\n") {
            Some(object) => writeln!(
                writer,
                "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
            ),
            None => writer.write_str(&line),
        }
    }
}
