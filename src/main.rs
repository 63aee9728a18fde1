//! The `switchboard` command line: parse, load configuration, call the app.

#![forbid(unsafe_code)]

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use switchboard::{
    app::{self, Hooks, Roles},
    cli::{
        self,
        admin::{self, EnqueueArgs, FailedAction},
        bench::{self, BenchCommand},
        demo,
        erase::{self, EraseArgs},
        keys::{self, KeysAction},
        purge::{self, PurgeArgs},
        schedule::{self, ScheduleAction},
    },
    config::Settings,
    telemetry,
};

/// Every allocation of the process goes through mimalloc (see `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Switchboard: `AskProAI`'s background job engine.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Extra configuration file, applied over config/<env>.toml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Directory holding <env>.toml overrides.
    #[arg(long, global = true, default_value = "config")]
    config_dir: PathBuf,
    /// Redis URL (overrides redis.url and `REDIS_URL`).
    #[arg(long, global = true)]
    redis_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (fleet, maintenance, HTTP), with embedded defaults.
    Serve {
        /// HTTP listen address (overrides http.listen).
        #[arg(long)]
        listen: Option<String>,
        /// Apply the database's pending migrations at start (`MariaDB`/`MySQL`).
        #[arg(long)]
        migrate: bool,
    },
    /// Run the webhook ingest endpoint only (with /healthz, /readyz, /metrics).
    Ingest {
        /// Listen address (overrides http.listen).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run the worker fleet (and queue maintenance) only.
    Work {
        /// Also serve /healthz, /readyz, /metrics (and the dashboard) on this address.
        #[arg(long)]
        listen: Option<String>,
        /// Apply the database's pending migrations at start (`MariaDB`/`MySQL`).
        #[arg(long)]
        migrate: bool,
    },
    /// Run the cron scheduler only; or list the schedules, or fire one now.
    Schedule {
        /// Also serve /healthz, /readyz, /metrics (and the dashboard) on this address.
        #[arg(long)]
        listen: Option<String>,
        #[command(subcommand)]
        action: Option<ScheduleAction>,
    },
    /// Post the sample webhooks to a running `serve` and show the whole path complete.
    Demo {
        /// Base URL of the running server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
    },
    /// Apply the database migrations (MariaDB/MySQL or `SQLite`, by database.url).
    Migrate,
    /// Show the overview (throughput, failures, fleet status), queues, supervisors and workers.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also show each partition of a partitioned queue (`queue#0`, `queue#1`, ...).
        #[arg(long)]
        partitions: bool,
    },
    /// Inspect and act on dead (failed) jobs.
    Failed {
        #[command(subcommand)]
        action: FailedAction,
    },
    /// Stop workers fetching from QUEUE.
    Pause {
        /// A queue of the configuration (or one registered in Redis).
        queue: String,
    },
    /// Let workers fetch from QUEUE again.
    Continue {
        /// A queue of the configuration (or one registered in Redis).
        queue: String,
    },
    /// Withdraw QUEUE's waiting jobs (pending and delayed) for good, optionally one kind's or
    /// one tenant's; needs --yes.
    Purge(PurgeArgs),
    /// Enqueue a job: QUEUE KIND JSON-ARGS.
    Enqueue(EnqueueArgs),
    /// Print an argon2 hash of the password read from stdin, for
    /// `SWITCHBOARD_DASHBOARD_OPERATORS` (`<name>:<role>:<hash>`).
    HashPassword,
    /// The app's API keys: create (printed once), list, revoke.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Erase a person (GDPR): anonymise their rows and queued jobs, print what was touched.
    Erase(EraseArgs),
    /// Benchmarks of the production code path; each prints one JSON line.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let mut settings = match Settings::load(&cli.config_dir, cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(url) = cli.redis_url {
        settings.redis.url = url;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = settings.runtime.worker_threads(
        cores,
        std::env::var("TOKIO_WORKER_THREADS").ok().as_deref(),
        &settings.redis.urls(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    // Inside the runtime: the trace export (when configured) sends from it.
    let traces = match runtime.block_on(async { telemetry::init_logging(&settings.telemetry) }) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve { listen, migrate } => {
                if let Some(listen) = listen {
                    settings.http.listen = listen;
                }
                settings.database.migrate_on_start |= migrate;
                let roles = Roles::serve(&settings);
                run_until_signal(settings, roles).await
            }
            Command::Ingest { listen } => {
                if let Some(listen) = listen {
                    settings.http.listen = listen;
                }
                run_until_signal(settings, Roles::ingest()).await
            }
            Command::Work { listen, migrate } => {
                settings.database.migrate_on_start |= migrate;
                let mut roles = Roles::work();
                if let Some(listen) = listen {
                    settings.http.listen = listen;
                    roles.http = true;
                }
                run_until_signal(settings, roles).await
            }
            Command::Schedule { listen, action } => schedule::run(settings, listen, action).await,
            Command::Migrate => app::migrate(&settings).await,
            Command::Demo { url } => demo::run(&settings, &url).await,
            Command::Status { json, partitions } => {
                admin::status(&settings, json, partitions).await
            }
            Command::Failed { action } => admin::failed(&settings, action).await,
            Command::Pause { queue } => admin::pause(&settings, &queue, true).await,
            Command::Continue { queue } => admin::pause(&settings, &queue, false).await,
            Command::Enqueue(args) => admin::enqueue(&settings, args).await,
            Command::Purge(args) => purge::run(&settings, &args).await,
            Command::HashPassword => admin::hash_password(),
            Command::Erase(args) => erase::run(&settings, &args).await,
            Command::Keys { action } => keys::run(&settings, action).await,
            Command::Bench { which } => bench::run(&settings, which).await,
        }
    });
    // The last spans (a job finished during the drain) go out before the process ends.
    traces.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            if e.downcast_ref::<cli::Refused>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Run `roles` until SIGTERM or SIGINT.
async fn run_until_signal(settings: Settings, roles: Roles) -> anyhow::Result<()> {
    app::run(
        settings,
        roles,
        Hooks::default(),
        switchboard::shutdown::signal(),
    )
    .await
}

/// An error and its causes on one line, each message once: a cause whose text its parent
/// already quotes (as the Redis client's errors do) is not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        for part in cause.to_string().split(": ") {
            let part = part.trim();
            if !part.is_empty() && !parts.iter().any(|p| p == part) {
                parts.push(part.to_owned());
            }
        }
    }
    parts.join(": ")
}

/// A mistyped command line: clap's first line (what is wrong) and exit 2; help and version
/// requests print as clap renders them.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("error: invalid arguments");
    eprintln!("{first} (see --help)");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// Every argument of every command says what it is in `--help`.
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "switchboard", &mut missing);
        assert!(missing.is_empty(), "without help text: {missing:#?}");
    }
}
