//! The Lua scripts, loaded once per process and run by SHA (EVALSHA, loading on a miss).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))));
    };
}

/// A script that settles jobs, with the sequence helpers (`sequence.lua`) in front.
macro_rules! settling_script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> = LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/sequence.lua"),
                include_str!(concat!("lua/", $file))
            ))
        });
    };
}

script!(FETCH, "fetch.lua");
settling_script!(ACK, "ack.lua");
script!(PROMOTE, "promote.lua");
settling_script!(RESCUE, "rescue.lua");
settling_script!(CANCEL, "cancel.lua");
script!(ENQUEUE, "enqueue.lua");
script!(REVIVE, "revive.lua");
script!(RATE_LIMIT, "rate_limit.lua");
script!(CIRCUIT, "circuit.lua");
script!(FIND, "find.lua");
script!(SCHEDULE_FIRE, "schedule_fire.lua");
script!(LEADER, "leader.lua");
script!(SWAP, "swap.lua");
script!(DROP_OLD, "drop_old.lua");
script!(PURGE, "purge.lua");
