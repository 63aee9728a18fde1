//! `noop`: does nothing. The benchmarks and smoke tests drive the real engine with it.

use serde::{Deserialize, Serialize};

use crate::{JobArgs, JobContext, JobError};

/// Arguments of the `noop` kind. `fail` makes it fail on purpose, which tests use to
/// exercise retries and the dead set through the production path.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Noop {
    /// When set, the job fails with this message (a transient failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<String>,
    /// When set, the job sleeps this many milliseconds before finishing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
}

impl JobArgs for Noop {
    const KIND: &'static str = "noop";
    const QUEUE: &'static str = "maintenance";
}

/// Handler of `noop`: the only one without services.
pub async fn handle(args: Noop, _ctx: JobContext) -> Result<(), JobError> {
    if let Some(ms) = args.sleep_ms {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    match args.fail {
        Some(reason) => Err(JobError::retry(reason)),
        None => Ok(()),
    }
}
