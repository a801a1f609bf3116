//! `boxoffice`: the command line. `boxoffice [serve]` runs the service with
//! settings from flags and the environment (`boxoffice --help` lists them);
//! `boxoffice user create` adds an account to the configured database;
//! `boxoffice reconcile` checks the money ledger.

use boxoffice::config::{Invocation, SettingsError, UserCreate};
use boxoffice::startup::{create_user, init_logging};
use boxoffice::{Application, Settings};
use secrecy::SecretString;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

/// Request handling allocates and frees small objects across threads all day long;
/// glibc malloc spent a quarter of the server's CPU on that in a flash sale (perf).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let invocation = match Settings::invocation_from_env() {
        Ok(invocation) => invocation,
        // --help, --version and flag errors: clap prints them and picks the exit code.
        Err(SettingsError::Parse(e)) => e.exit(),
        Err(e @ SettingsError::Invalid(_)) => {
            eprintln!("boxoffice: {e}\n(run `boxoffice --help` for the list of settings)");
            return ExitCode::from(2);
        }
    };
    match invocation {
        Invocation::Serve(settings) => serve(*settings).await,
        Invocation::UserCreate(command) => user_create(command).await,
        Invocation::Reconcile { settings, event, grace } => {
            init_logging(settings.log_format);
            match boxoffice::startup::reconcile(*settings, event, grace).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("boxoffice reconcile: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

async fn serve(settings: Settings) -> ExitCode {
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

/// `boxoffice user create`: the password is one line of stdin; the new user's id
/// goes to stdout, everything else (log, errors) to stderr.
async fn user_create(command: UserCreate) -> ExitCode {
    init_logging(boxoffice::config::LogFormat::Text);
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password for {}: ", command.email);
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        eprintln!("boxoffice user create: reading the password from stdin: {e}");
        return ExitCode::FAILURE;
    }
    let password = SecretString::from(line.trim_end_matches(['\n', '\r']).to_owned());
    match create_user(command, password).await {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("boxoffice user create: {e:#}");
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
