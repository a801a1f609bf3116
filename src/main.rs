//! `boxoffice`: the command line. `boxoffice [serve]` runs the service with
//! settings from flags and the environment (`boxoffice --help` lists them);
//! `boxoffice reconcile` checks the money ledger.

use boxoffice::config::{SettingsError, Task};
use boxoffice::startup::init_logging;
use boxoffice::{Application, Settings};
use std::process::ExitCode;

/// Request handling allocates and frees small objects across threads all day long;
/// glibc malloc spent a quarter of the server's CPU on that in a flash sale (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let task = match Settings::task_from_env() {
        Ok(t) => t,
        // --help, --version and flag errors: clap prints them and picks the exit code.
        Err(SettingsError::Parse(e)) => e.exit(),
        Err(e @ SettingsError::Invalid(_)) => {
            eprintln!("boxoffice: {e}\n(run `boxoffice --help` for the list of settings)");
            return ExitCode::from(2);
        }
    };
    let settings = match task {
        Task::Serve(settings) => settings,
        Task::Reconcile { settings, event, grace } => {
            init_logging(settings.log_format);
            return match boxoffice::startup::reconcile(settings, event, grace).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("boxoffice reconcile: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
    };
    init_logging(settings.log_format);
    let result = async { Application::build(settings).await?.run_until_stopped(shutdown_signal()).await }.await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once, to stderr: the log goes there too, so a second copy would repeat it.
            tracing::error!("{e:#}");
            ExitCode::FAILURE
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
