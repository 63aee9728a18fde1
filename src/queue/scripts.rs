//! The Lua scripts, loaded once per process and run by SHA (EVALSHA, loading on a miss).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))));
    };
}

/// A script that makes jobs ready or serves them, with the lane helpers (`lanes.lua`) in
/// front.
macro_rules! lane_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/lanes.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

/// A script that settles or withdraws jobs, with the lane and sequence helpers in front.
macro_rules! settling_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/lanes.lua"),
                include_str!("lua/sequence.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

lane_script!(FETCH, "fetch.lua");

/// `ack.lua` and `fetch.lua` in one script (see `ack_fetch.lua`): a worker's completer
/// settles a batch and leases jobs for the slots it frees in one call.
pub static ACK_FETCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/lanes.lua"),
        include_str!("lua/sequence.lua"),
        "local function settle(KEYS, ARGV)\n",
        include_str!("lua/ack.lua"),
        "end\nlocal function lease(KEYS, ARGV)\n",
        include_str!("lua/fetch.lua"),
        "end\n",
        include_str!("lua/ack_fetch.lua")
    ))
});
settling_script!(ACK, "ack.lua");
lane_script!(PROMOTE, "promote.lua");
settling_script!(RESCUE, "rescue.lua");
settling_script!(CANCEL, "cancel.lua");
settling_script!(PURGE, "purge.lua");
lane_script!(ENQUEUE, "enqueue.lua");
lane_script!(REVIVE, "revive.lua");
script!(RATE_LIMIT, "rate_limit.lua");
script!(CIRCUIT, "circuit.lua");
lane_script!(SCHEDULE_FIRE, "schedule_fire.lua");
script!(LEADER, "leader.lua");
script!(SWAP, "swap.lua");
script!(DROP_OLD, "drop_old.lua");
