//! The app's door (issue 16): what lets the Laravel app hand work to Switchboard over HTTP.
//! Built so far: its API keys ([`keys`]).

pub mod keys;
