//! The Lua scripts, loaded once per process and run by SHA (EVALSHA, loading on a miss).

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))));
    };
}

script!(FETCH, "fetch.lua");
script!(ACK, "ack.lua");
script!(PROMOTE, "promote.lua");
script!(RESCUE, "rescue.lua");
script!(ENQUEUE_UNIQUE, "enqueue_unique.lua");
script!(REVIVE, "revive.lua");
script!(RATE_LIMIT, "rate_limit.lua");
script!(SCHEDULE_FIRE, "schedule_fire.lua");
script!(LEADER, "leader.lua");
