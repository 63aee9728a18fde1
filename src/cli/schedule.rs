//! `switchboard schedule`: run the scheduler role, list the schedules, or fire one now.

use chrono::Utc;
use clap::Subcommand;

use crate::{
    app::{self, Hooks, Roles},
    config::Settings,
    maintenance::Scheduler,
};

/// `switchboard schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Each schedule with its next three fire times and its last fire.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Enqueue the schedule's job now, outside its timetable.
    Run {
        /// The schedule's name.
        name: String,
    },
}

/// Run `action`, or the scheduler role until SIGTERM/SIGINT when there is none (with
/// health, metrics and the dashboard on `listen` when given).
pub async fn run(
    mut settings: Settings,
    listen: Option<String>,
    action: Option<ScheduleAction>,
) -> anyhow::Result<()> {
    let Some(action) = action else {
        let mut roles = Roles::schedule();
        if let Some(listen) = listen {
            settings.http.listen = listen;
            roles.http = true;
        }
        return app::run(settings, roles, Hooks::default(), crate::shutdown::signal()).await;
    };
    let (queues, _) = app::connect(&settings, false).await?;
    let scheduler = Scheduler::new(queues, &settings.schedule, &settings.scheduler)
        .map_err(anyhow::Error::msg)?;
    match action {
        ScheduleAction::List { json } => {
            let list = scheduler.list(Utc::now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            for s in &list {
                println!(
                    "{}  {:?} {}  -> {} on {}  (catch_up = {})",
                    s.name, s.cron, s.timezone, s.kind, s.queue, s.catch_up
                );
                println!("  next: {}", s.next.join(", "));
                match (&s.last_fire, &s.last_job) {
                    (Some(at), Some(job)) => println!("  last: {at} (job {job})"),
                    _ => println!("  last: never"),
                }
            }
            if list.is_empty() {
                println!("no schedules are configured");
            }
            Ok(())
        }
        ScheduleAction::Run { name } => match scheduler.fire_now(&name).await? {
            Some(enqueued) => {
                println!("enqueued {} (schedule {name})", enqueued.id);
                Ok(())
            }
            None => {
                anyhow::bail!("no schedule is named {name:?} (see `switchboard schedule list`)")
            }
        },
    }
}
