//! Who this process is: the host name and the ids that worker registrations and the leader
//! lease carry, unique across hosts and restarts.

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "host".to_owned(), |h| h.trim().to_owned())
}

/// `<host>:<pid>:<supervisor>:<queue>:<n>:<random>`: one worker loop of a supervisor.
pub fn worker_id(supervisor: &str, queue: &str, n: usize) -> String {
    let nonce: u32 = rand::random();
    format!(
        "{}:{}:{supervisor}:{queue}:{n}:{nonce:08x}",
        hostname(),
        std::process::id()
    )
}

/// `<host>:<pid>:<ulid>`: this process as a candidate for the leader lease.
pub fn process_token() -> String {
    format!(
        "{}:{}:{}",
        hostname(),
        std::process::id(),
        ulid::Ulid::new()
    )
}
