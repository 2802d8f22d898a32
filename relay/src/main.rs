//! `sms-relay`: runs the relay until Ctrl-C / SIGTERM, then shuts down gracefully.

use clap::Parser;
use sms_relay::config::{Cli, Config};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .json()
        .init();
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sms-relay: {e}");
            std::process::exit(2);
        }
    };
    let demo = config.demo;
    let running = match sms_relay::app::start(config, cli.reset_log).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sms-relay: {e}");
            std::process::exit(1);
        }
    };
    let url = running.app.config.public_url();
    println!(
        "relay listening on {url}/ {}",
        if demo {
            "(demo: simulated provider)"
        } else {
            ""
        }
    );
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    running.stop().await;
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
