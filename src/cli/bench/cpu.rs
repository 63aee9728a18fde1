//! CPU time spent on each side of a run: the Redis servers' (`INFO cpu`, summed over every
//! master) and this process's (`/proc/self/stat`). Divided by the jobs of a run they say
//! where the time goes, and unlike jobs per second they hold still when other programs share
//! the machine.

use crate::queue::Queues;

/// CPU seconds used so far by the Redis servers and by this process.
#[derive(Clone, Copy)]
pub struct Cpu {
    redis: f64,
    process: f64,
}

impl Cpu {
    /// Read both clocks now.
    pub async fn now(queues: &Queues) -> anyhow::Result<Self> {
        Ok(Self {
            redis: redis_secs(queues).await?,
            process: process_secs(),
        })
    }

    /// Microseconds per job on each side since `self`: `(redis, process)`.
    pub fn per_job_since(self, later: Self, jobs: usize) -> (f64, f64) {
        let per = |a: f64, b: f64| ((b - a) * 1e6 / jobs.max(1) as f64 * 100.0).round() / 100.0;
        (
            per(self.redis, later.redis),
            per(self.process, later.process),
        )
    }
}

/// `used_cpu_user + used_cpu_sys` of `INFO cpu`, summed over every master.
async fn redis_secs(queues: &Queues) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for mut node in queues.each_master().await? {
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut node).await?;
        for field in ["used_cpu_user:", "used_cpu_sys:"] {
            total += info
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .ok_or_else(|| anyhow::anyhow!("INFO cpu has no {field}"))?;
        }
    }
    Ok(total)
}

/// User plus system time of this process (fields 14 and 15 of `/proc/self/stat`, in clock
/// ticks of 1/100 s as Linux reports them); 0 where there is no `/proc`.
fn process_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after it follow its `)`.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // `rest` starts at field 3, so fields 14 and 15 are at 11 and 12.
    (tick(11) + tick(12)) / 100.0
}
