//! The running service: `Application::build` wires configuration, database,
//! journal, actors and routes; `run_until_stopped` serves until a shutdown
//! signal and then drains in order — stop accepting, let in-flight requests
//! finish, drain every event actor, flush the journal, stop the embedded database.
//! Also the process's logging (`init_logging`), and the `boxoffice user create`
//! command (`create_user`), which needs the same database wiring.

use crate::auth::accounts::{self, NewAccount};
use crate::auth::admission::AdmissionSigner;
use crate::auth::password::{self, Passwords};
use crate::auth::qr::{QrSigner, link_expiry};
use crate::auth::rate_limit::RateLimiter;
use crate::auth::tokens::{self, TokenKeys};
use crate::auth::{Email, Role, check_password, parse_name};
use crate::cluster::Cluster;
use crate::config::{DatabaseSettings, LogFormat, Settings, UserCreate};
use crate::error::ApiError;
use crate::http;
use crate::payments::PaymentProvider;
use crate::payments::stripe::StripeProvider;
use crate::payments::test_provider::TestProvider;
use crate::state::{AppState, ENDED_HOLD_RETENTION, HoldOwners, Shared};
use crate::store::cache::{Cache, RedisLink};
use crate::store::charges::ChargeLog;
use crate::store::db;
use crate::store::embedded_pg::EmbeddedPostgres;
use crate::store::journal::{JournalConfig, PgJournal};
use crate::store::leases::Leases;
use crate::store::loader::PgLoader;
use crate::store::queue::{Joiner, RoomCache};
use crate::store::search::SearchIndex;
use crate::workers::availability;
use crate::workers::notify::Notifier;
use crate::workers::relay::{OutboxRelay, RelayConfig};
use anyhow::Context;
use boxoffice_actors::{ActorConfig, Limits, Registry, SystemClock};
use dashmap::DashMap;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

/// The journal gives up on a connection sooner than request paths do: its breaker
/// then fails writes fast until the database answers (see `journal`).
const JOURNAL_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

/// The Prometheus recorder is process-global; several apps in one test process share it.
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        metrics_exporter_prometheus::Matcher::Full("boxoffice_journal_batch_size".into()),
                        &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0],
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    state: AppState,
    journal_writers: Vec<tokio::task::JoinHandle<()>>,
    embedded: Option<EmbeddedPostgres>,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Stops the outbox relay, and its task.
    relay: (oneshot::Sender<()>, tokio::task::JoinHandle<()>),
}

impl Application {
    /// Binds the listener, connects (starting the embedded database if no
    /// `DATABASE_URL`), migrates and starts the journal.
    ///
    /// The listener comes first, so a port already in use fails the start before
    /// anything else is started; a start that fails after the embedded database is
    /// up stops that database again rather than leaving it running.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.bind).await.with_context(|| format!("binding {}", settings.bind))?;
        let (url, embedded) = match &settings.database_url {
            Some(url) => (url.clone(), None),
            None => {
                tracing::info!(data_dir = %settings.data_dir.display(), "no DATABASE_URL: starting the embedded PostgreSQL");
                let pg = EmbeddedPostgres::start_with_bin_dir(
                    &settings.data_dir.join("postgres"),
                    settings.pg_bin_dir.as_deref(),
                )
                .await
                .context("starting the embedded PostgreSQL")?;
                (SecretString::from(pg.url()), Some(pg))
            }
        };
        match Self::assemble(settings, listener, url).await {
            Ok(app) => Ok(Self { embedded, ..app }),
            Err(error) => {
                if let Some(pg) = embedded
                    && let Err(stop) = pg.stop().await
                {
                    tracing::warn!(error = %stop, "could not stop the embedded PostgreSQL after a failed start");
                }
                Err(error)
            }
        }
    }

    /// Everything after the listener and the database: the service on `url`.
    async fn assemble(settings: Settings, listener: TcpListener, url: SecretString) -> anyhow::Result<Self> {
        let pool = db::connect(url.expose_secret(), settings.database_max_connections)
            .await
            .context("connecting to PostgreSQL")?;
        db::migrator().run(&pool).await.context("running migrations")?;

        let jwt_secret = match &settings.jwt_secret {
            Some(s) => s.clone(),
            None => persistent_secret(&settings, "jwt.secret").context("preparing the JWT secret")?,
        };
        let qr_key = match &settings.qr_signing_key {
            Some(s) => s.clone(),
            None => persistent_secret(&settings, "qr.secret").context("preparing the QR signing key")?,
        };
        let qr = QrSigner::new((settings.qr_key_id.clone(), qr_key), settings.qr_retired_keys.clone());
        let payments = payment_provider(&settings)?;
        let tokens = TokenKeys::new(
            &jwt_secret,
            &settings.jwt_issuer,
            &settings.jwt_audience,
            settings.access_ttl,
            settings.refresh_ttl,
        );
        if settings.stripe_secret_key.is_none() {
            tracing::warn!(
                "no STRIPE_SECRET_KEY: using the built-in test payment provider (pm_card_visa approves, pm_card_chargeDeclined declines)"
            );
        }
        if settings.redis_url.is_none() {
            tracing::info!("no REDIS_URL: running without Redis (outbox kept in PostgreSQL)");
        }

        // The journal has its own connections, so request-path reads can never
        // starve the writes every acknowledgement waits for.
        let journal_pool =
            db::connect_with_timeout(url.expose_secret(), settings.journal_writers as u32 + 1, JOURNAL_ACQUIRE_TIMEOUT)
                .await
                .context("connecting the journal to PostgreSQL")?;
        let node_id = match &settings.node_id {
            Some(id) => id.clone(),
            None => persistent_node_id(&settings).context("preparing the node id")?,
        };
        let leases = Arc::new(Leases::new(node_id, settings.lease_ttl));
        let (journal, journal_writers) = PgJournal::start(
            journal_pool,
            JournalConfig {
                max_batch: settings.journal_max_batch,
                max_wait: settings.journal_max_wait,
                writers: settings.journal_writers,
            },
            Some(Arc::clone(&leases)),
        );
        let journal_load = journal.committed_records();
        let registry = Registry::new(
            Arc::new(PgLoader::new(pool.clone(), ENDED_HOLD_RETENTION).with_leases(Arc::clone(&leases))),
            Arc::new(journal),
            Arc::new(SystemClock),
            ActorConfig { ended_retention: ENDED_HOLD_RETENTION, ..ActorConfig::default() },
            Limits {
                max_in_flight: settings.event_max_in_flight,
                call_timeout: settings.event_call_timeout,
                retry_after: Duration::from_millis(200),
            },
        );
        let redis = match &settings.redis_url {
            Some(url) => Some(RedisLink::open(url).context("REDIS_URL is not a valid Redis URL")?),
            None => None,
        };
        let link_signer = qr.clone();
        let notifier = Notifier::from_settings(
            settings.smtp_url.as_ref(),
            settings.smtp_from.as_deref(),
            settings.public_url.as_deref(),
        )?
        .with_ticket_links(Arc::new(move |ticket, event_date| link_signer.link_path(ticket, link_expiry(event_date))));
        if settings.smtp_url.is_none() {
            tracing::info!(
                "no SMTP_URL: notification emails are written to the log (masked recipient and subject only)"
            );
        }
        let (relay_stop, relay_stopped) = oneshot::channel::<()>();
        let relay_config = RelayConfig {
            rush_max_defer: settings.outbox_rush_defer,
            retention: settings.outbox_retention,
            ..RelayConfig::default()
        };
        let relay = OutboxRelay::new(pool.clone(), redis.as_ref(), notifier)
            .with_config(relay_config)
            .with_rush_gate(journal_load);
        let relay_task = tokio::spawn(relay.run(async move {
            let _ = relay_stopped.await;
        }));
        let search = Arc::new(SearchIndex::new(pool.clone()));
        let started = Instant::now();
        search.sync().await.context("loading the search index")?;
        tracing::info!(events = search.len(), took_ms = started.elapsed().as_millis() as u64, "search index loaded");
        let advertise_url = match &settings.advertise_url {
            Some(url) => url.clone(),
            None => format!("http://{}", listener.local_addr()?),
        };
        // Peers answer within the event call budget; past it, the call is given up.
        let call_timeout = settings.event_call_timeout + Duration::from_secs(1);
        // The waiting rooms' owner writes get their own connections: a crowd polling
        // its places must not starve the admissions it waits for.
        let rooms_pool = db::connect_with_timeout(url.expose_secret(), 2, JOURNAL_ACQUIRE_TIMEOUT)
            .await
            .context("connecting the waiting rooms' ticker to PostgreSQL")?;
        let upkeep_pool = db::connect_with_timeout(url.expose_secret(), 2, JOURNAL_ACQUIRE_TIMEOUT)
            .await
            .context("connecting the cluster's upkeep to PostgreSQL")?;
        let cluster =
            Arc::new(Cluster::new(leases, advertise_url, pool.clone(), upkeep_pool, &jwt_secret, call_timeout));
        cluster.register().await.context("joining the cluster")?;
        tracing::info!(node = cluster.node_id(), url = %cluster.me().advertise_url, "node registered");
        let charges = ChargeLog::start(pool.clone(), settings.charge_grace);
        let joins = Joiner::start(pool.clone());
        let state = AppState(Arc::new(Shared {
            cluster,
            charges,
            db: pool,
            registry,
            tokens,
            auth_limiter: RateLimiter::new(settings.auth_rate_limit_per_minute, Duration::from_secs(60)),
            payment_throttle: Default::default(),
            passwords: Passwords::new(settings.password_hash_concurrency, password::DEFAULT_MAX_WAIT),
            payments,
            admissions: AdmissionSigner::new(&qr),
            rooms: RoomCache::default(),
            joins,
            queue_join_limiter: RateLimiter::new(settings.queue_joins_per_ip_per_minute, Duration::from_secs(60)),
            qr,
            metrics: metrics_handle(),
            cache: Cache::new(redis.as_ref()),
            settings,
            currencies: DashMap::new(),
            hold_owners: HoldOwners::default(),
            search: search.clone(),
            stopping: tokio::sync::watch::channel(false).0,
        }));
        let router = http::router(state.clone());
        let background = vec![
            tokio::spawn(availability::report(state.clone())),
            tokio::spawn(search.keep_in_sync()),
            tokio::spawn(crate::money::reconcile::run(state.clone())),
            tokio::spawn(cluster_upkeep(state.clone())),
            tokio::spawn(crate::workers::waiting_room::run(state.clone(), rooms_pool)),
        ];
        Ok(Self {
            listener,
            router,
            state,
            journal_writers,
            embedded: None,
            background,
            relay: (relay_stop, relay_task),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains everything in order.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { listener, router, state, journal_writers, embedded, background, relay } = self;
        tracing::info!(addr = %listener.local_addr()?, "boxoffice listening");
        let stopping = state.stopping.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.send_replace(true);
        };
        http::server::serve(listener, router, state.settings.request_timeout, shutdown).await;
        tracing::info!("shutting down: draining event actors");
        for task in background {
            task.abort();
        }
        state.registry.shutdown().await;
        // Drained: hand every event over at once rather than at lease expiry.
        state.cluster.leave().await;
        // Dropping the last journal handle (held by the registry) lets the writers
        // finish the queue and exit.
        let pool = state.db.clone();
        drop(state);
        for writer in journal_writers {
            let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
        }
        // A relay pass in progress finishes; unmarked rows go out at the next start.
        let (relay_stop, mut relay_task) = relay;
        let _ = relay_stop.send(());
        if tokio::time::timeout(Duration::from_secs(15), &mut relay_task).await.is_err() {
            relay_task.abort();
        }
        pool.close().await;
        if let Some(pg) = embedded {
            pg.stop().await.context("stopping the embedded PostgreSQL")?;
        }
        tracing::info!("shutdown complete");
        Ok(())
    }
}

/// `boxoffice user create`: creates an account in the configured database with the
/// checks of `POST /auth/register` (email, name, password), whether or not the server
/// runs. With `DATABASE_URL` it connects there; otherwise to the embedded cluster in
/// the data directory: the running server's if it is up, else started for the
/// command (migrated first) and stopped after. An organizer made here is approved.
/// Returns the new user's id.
pub async fn create_user(command: UserCreate, password: SecretString) -> anyhow::Result<Uuid> {
    let invalid = |e: ApiError| anyhow::anyhow!("{} ({})", e.detail, e.code);
    let email = Email::parse(&command.email).map_err(invalid)?;
    check_password(password.expose_secret()).map_err(invalid)?;
    let default_name = email.as_str().split('@').next().unwrap_or_default().to_owned();
    let name = parse_name(command.name.as_deref().unwrap_or(&default_name)).map_err(invalid)?;
    let role = Role::parse(&command.role).with_context(|| format!("{:?} is not a role", command.role))?;
    let (pool, embedded) = command_database(&command.database).await?;
    let created = async {
        let hash = Passwords::new(1, password::DEFAULT_MAX_WAIT)
            .hash(password)
            .await
            .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?;
        let account = NewAccount { email: &email, password_hash: hash, name, role, approved: true };
        let created = accounts::insert(&pool, account).await.context("creating the account")?;
        created.map(|a| a.user_id).ok_or_else(|| anyhow::anyhow!("an account with the email {} exists", email.as_str()))
    }
    .await;
    close_command_database(pool, embedded).await?;
    created
}

/// A small pool on the configured database for a one-off command (`user create`,
/// `reconcile`), migrated: `DATABASE_URL` if set; otherwise the embedded cluster in
/// the data directory — the running server's if it is up, else started for the
/// command (and returned, to be stopped by [`close_command_database`]).
async fn command_database(database: &DatabaseSettings) -> anyhow::Result<(PgPool, Option<EmbeddedPostgres>)> {
    let (url, embedded) = match &database.database_url {
        Some(url) => (url.clone(), None),
        None => {
            let data_dir = database.data_dir.join("postgres");
            match EmbeddedPostgres::running_url(&data_dir).await.context("reading the embedded PostgreSQL")? {
                Some(url) => (SecretString::from(url), None),
                None => {
                    let pg = EmbeddedPostgres::start_with_bin_dir(&data_dir, database.pg_bin_dir.as_deref())
                        .await
                        .context("starting the embedded PostgreSQL")?;
                    (SecretString::from(pg.url()), Some(pg))
                }
            }
        }
    };
    let pool = async {
        let pool = db::connect(url.expose_secret(), 2).await.context("connecting to PostgreSQL")?;
        db::migrator().run(&pool).await.context("running migrations")?;
        anyhow::Ok(pool)
    }
    .await;
    match pool {
        Ok(pool) => Ok((pool, embedded)),
        Err(e) => {
            if let Some(pg) = embedded {
                let _ = pg.stop().await;
            }
            Err(e)
        }
    }
}

async fn close_command_database(pool: PgPool, embedded: Option<EmbeddedPostgres>) -> anyhow::Result<()> {
    pool.close().await;
    if let Some(pg) = embedded {
        pg.stop().await.context("stopping the embedded PostgreSQL")?;
    }
    Ok(())
}

/// Renews leases and heartbeats every third of the lease TTL (see `cluster`).
async fn cluster_upkeep(state: AppState) {
    let mut tick = tokio::time::interval(state.settings.lease_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.cluster.upkeep(&state.registry).await;
    }
}

/// This node's id, generated once and kept in the data directory, so a restarted
/// node takes its events back at once instead of waiting for its old leases.
fn persistent_node_id(settings: &Settings) -> anyhow::Result<String> {
    let path = settings.data_dir.join("node.id");
    if let Ok(existing) = std::fs::read_to_string(&path)
        && !existing.trim().is_empty()
    {
        return Ok(existing.trim().to_owned());
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    let suffix: String = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let id = if host.is_empty() { format!("node-{suffix}") } else { format!("{host}-{suffix}") };
    std::fs::create_dir_all(&settings.data_dir)?;
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// A secret generated once and kept (0600) in the data directory, so tokens and
/// ticket codes stay valid across restarts without configuration.
fn persistent_secret(settings: &Settings, file: &str) -> anyhow::Result<SecretString> {
    use std::io::Write;
    let path = settings.data_dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path)
        && existing.trim().len() >= 32
    {
        return Ok(SecretString::from(existing.trim().to_owned()));
    }
    std::fs::create_dir_all(&settings.data_dir)?;
    let secret = tokens::new_refresh_token() + &tokens::new_refresh_token();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&path)?.write_all(secret.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a secret (configure it to choose one)");
    Ok(SecretString::from(secret))
}

/// Logging: `tracing` to stderr, text or JSON. Handlers never log tokens,
/// passwords or card data; secrets are `SecretString`s that print as `[REDACTED]`.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The configured payment provider: Stripe with a secret key, else the test provider.
fn payment_provider(settings: &Settings) -> anyhow::Result<Arc<dyn PaymentProvider>> {
    Ok(match &settings.stripe_secret_key {
        Some(key) => Arc::new(
            StripeProvider::new(key, settings.stripe_webhook_secret.clone(), settings.stripe_api_base.as_deref())
                .map_err(|e| anyhow::anyhow!("configuring Stripe: {e}"))?,
        ),
        None => Arc::new(TestProvider::new()),
    })
}

/// `boxoffice reconcile`: prints the ledger check (see `money::report`) and says
/// whether it is clean.
pub async fn reconcile(settings: Settings, event: Option<uuid::Uuid>, grace: Duration) -> anyhow::Result<bool> {
    let provider = payment_provider(&settings)?;
    let database = DatabaseSettings {
        database_url: settings.database_url.clone(),
        data_dir: settings.data_dir.clone(),
        pg_bin_dir: settings.pg_bin_dir.clone(),
    };
    let (pool, embedded) = command_database(&database).await?;
    let report = crate::money::report::build(&pool, provider.as_ref(), event, grace).await;
    close_command_database(pool, embedded).await?;
    let report = report?;
    print!("{}", report.render());
    Ok(report.is_clean())
}
