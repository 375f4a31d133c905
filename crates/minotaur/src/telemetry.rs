//! Log output: installs the tracing subscriber (only the binary does this). `RUST_LOG` filters,
//! `LOG_FORMAT=json` gives one JSON object per line; logs go to stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// What is logged when `RUST_LOG` is unset: our info; only errors of ractor_cluster, which
/// warns at every closed TCP session (the connector reports those at the right level).
const DEFAULT_FILTER: &str = "info,ractor=warn,ractor_cluster=error,hickory_proto=warn,hickory_resolver=warn,hickory_net=warn";

/// Installs the global subscriber.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: `docker logs` and log collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
