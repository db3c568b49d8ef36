//! Log set-up shared by `dnsrail` and `dnsrailctl`: standard error, level
//! from `RUST_LOG` (default `info`), colours only on a terminal (journald and
//! files get plain text).

pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
