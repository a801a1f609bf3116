//! `boxoffice`: runs the service with settings from the environment.

use boxoffice::startup::init_logging;
use boxoffice::{Application, Settings};

/// Request handling allocates and frees small objects across threads all day long;
/// glibc malloc spent a quarter of the server's CPU on that in a flash sale (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        print!("{}", Settings::help());
        return std::process::ExitCode::SUCCESS;
    }
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("boxoffice: {e}\n(run `boxoffice --help` for the list of settings)");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(settings.log_format);
    let result = async { Application::build(settings).await?.run_until_stopped(shutdown_signal()).await }.await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("boxoffice: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
