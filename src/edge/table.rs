//! The connection table: who is open, from which address, and who goes when the listener is
//! full; and the episodes of shedding that are logged once each. Pure bookkeeping, no sockets
//! and no clock of its own, so the admission rules are unit-tested here.
//!
//! Invariants: `per_ip` holds exactly the count of `entries` from each address (no zero
//! counts), and `entries.len() <= max` after every admission.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// What the table needs to know about a connection to choose whom to close.
pub(crate) trait Occupant {
    /// Since when the connection has had no request in flight (waiting for a request head,
    /// or idle in keep-alive); `None` while it serves a request.
    fn idle_since(&self) -> Option<Instant>;
}

/// Why a new connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its address already holds `max_per_ip` connections.
    PerIp,
    /// The table is full and every connection in it is busy.
    Full,
}

/// The answer to a new connection.
#[derive(Debug)]
pub(crate) enum Admission<O> {
    /// Admitted as `id`; `evicted` is the idle connection closed to make room, if any.
    Admitted {
        id: u64,
        evicted: Option<O>,
    },
    Refused(Refusal),
}

/// The open connections of one listener.
pub(crate) struct Table<O> {
    entries: HashMap<u64, (IpAddr, O)>,
    /// Connections per address; an address without connections has no entry.
    per_ip: HashMap<IpAddr, usize>,
    max: usize,
    max_per_ip: usize,
    next_id: u64,
}

impl<O: Occupant> Table<O> {
    /// An empty table holding at most `max` connections, `max_per_ip` from one address.
    pub(crate) fn new(max: usize, max_per_ip: usize) -> Self {
        Self {
            entries: HashMap::new(),
            per_ip: HashMap::new(),
            max: max.max(1),
            max_per_ip: max_per_ip.max(1),
            next_id: 0,
        }
    }

    /// Admit a connection from `ip`: refused over the per-address cap; at the cap, the
    /// connection idle the longest makes room; with none idle, refused.
    pub(crate) fn admit(&mut self, ip: IpAddr, occupant: O) -> Admission<O> {
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            return Admission::Refused(Refusal::PerIp);
        }
        let evicted = if self.entries.len() >= self.max {
            match self.evict_idle(1).pop() {
                Some(o) => Some(o),
                None => return Admission::Refused(Refusal::Full),
            }
        } else {
            None
        };
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(id, (ip, occupant));
        *self.per_ip.entry(ip).or_default() += 1;
        Admission::Admitted { id, evicted }
    }

    /// Take out up to `n` connections, those idle the longest first; busy ones stay.
    pub(crate) fn evict_idle(&mut self, n: usize) -> Vec<O> {
        let mut idle: Vec<(Instant, u64)> = self
            .entries
            .iter()
            .filter_map(|(id, (_, o))| o.idle_since().map(|t| (t, *id)))
            .collect();
        idle.sort_unstable();
        idle.into_iter()
            .take(n)
            .filter_map(|(_, id)| self.remove(id))
            .collect()
    }

    /// Take out connection `id` (closed, or evicted earlier: then `None`).
    pub(crate) fn remove(&mut self, id: u64) -> Option<O> {
        let (ip, o) = self.entries.remove(&id)?;
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(o)
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every connection, emptying the table (shutdown).
    pub(crate) fn drain(&mut self) -> Vec<O> {
        self.per_ip.clear();
        self.entries.drain().map(|(_, (_, o))| o).collect()
    }
}

/// One stretch of shedding of one kind (cap, per-address cap, accept failures): it starts
/// with the first shed connection and ends after a quiet spell without any, so it is logged
/// once at its start and once at its end, however many connections it sheds.
#[derive(Debug, Default)]
pub(crate) struct Episode {
    started: Option<Instant>,
    last: Option<Instant>,
    /// Idle connections closed to make room during this episode.
    pub(crate) evicted: u64,
    /// New connections refused during this episode.
    pub(crate) refused: u64,
}

/// How an episode went, when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Summary {
    pub(crate) lasted: Duration,
    pub(crate) evicted: u64,
    pub(crate) refused: u64,
}

impl Episode {
    /// Count `evicted` and `refused` at `now`; true when this starts an episode.
    pub(crate) fn record(&mut self, now: Instant, evicted: u64, refused: u64) -> bool {
        let starts = self.started.is_none();
        if starts {
            *self = Self {
                started: Some(now),
                ..Self::default()
            };
        }
        self.last = Some(now);
        self.evicted += evicted;
        self.refused += refused;
        starts
    }

    /// End the episode when nothing was shed for `quiet` up to `now`.
    pub(crate) fn end_if_quiet(&mut self, now: Instant, quiet: Duration) -> Option<Summary> {
        let (started, last) = (self.started?, self.last?);
        if now.saturating_duration_since(last) < quiet {
            return None;
        }
        let summary = Summary {
            lasted: last.saturating_duration_since(started),
            evicted: self.evicted,
            refused: self.refused,
        };
        *self = Self::default();
        Some(summary)
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, net::Ipv4Addr, rc::Rc};

    use super::*;

    /// A connection whose idleness the test sets.
    #[derive(Clone)]
    struct Fake(u32, Rc<Cell<Option<Instant>>>);

    impl Occupant for Fake {
        fn idle_since(&self) -> Option<Instant> {
            self.1.get()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn conn(name: u32, idle: Option<Instant>) -> Fake {
        Fake(name, Rc::new(Cell::new(idle)))
    }

    fn admitted(a: Admission<Fake>) -> (u64, Option<u32>) {
        match a {
            Admission::Admitted { id, evicted } => (id, evicted.map(|f| f.0)),
            Admission::Refused(r) => panic!("refused: {r:?}"),
        }
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let t0 = Instant::now();
        let mut table = Table::new(3, 10);
        let busy = conn(1, None);
        admitted(table.admit(ip(1), busy.clone()));
        admitted(table.admit(ip(2), conn(2, Some(t0 + Duration::from_secs(5)))));
        admitted(table.admit(ip(3), conn(3, Some(t0 + Duration::from_secs(1)))));
        let (_, evicted) = admitted(table.admit(ip(4), conn(4, None)));
        assert_eq!(evicted, Some(3), "idle since 1 s beats idle since 5 s");
        assert_eq!(table.len(), 3);
        let (_, evicted) = admitted(table.admit(ip(5), conn(5, None)));
        assert_eq!(evicted, Some(2));
        // Now all three are busy: a new connection is refused, nobody is closed.
        assert!(matches!(
            table.admit(ip(6), conn(6, Some(t0))),
            Admission::Refused(Refusal::Full)
        ));
        assert_eq!(table.len(), 3);
        // Once the first one idles it is the one to go.
        busy.1.set(Some(t0 + Duration::from_secs(9)));
        let (_, evicted) = admitted(table.admit(ip(6), conn(6, None)));
        assert_eq!(evicted, Some(1));
    }

    #[test]
    fn one_address_gets_its_cap_and_no_more_until_one_closes() {
        let mut table = Table::new(100, 2);
        let (a, _) = admitted(table.admit(ip(1), conn(1, None)));
        admitted(table.admit(ip(1), conn(2, None)));
        assert!(matches!(
            table.admit(ip(1), conn(3, None)),
            Admission::Refused(Refusal::PerIp)
        ));
        admitted(table.admit(ip(2), conn(4, None)));
        assert_eq!(table.remove(a).map(|f| f.0), Some(1));
        assert!(table.remove(a).is_none(), "a second removal is a no-op");
        admitted(table.admit(ip(1), conn(5, None)));
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn an_evicted_connection_frees_its_address_slot() {
        let t0 = Instant::now();
        let mut table = Table::new(2, 1);
        admitted(table.admit(ip(1), conn(1, Some(t0))));
        admitted(table.admit(ip(2), conn(2, None)));
        let later = Some(t0 + Duration::from_secs(1));
        let (_, evicted) = admitted(table.admit(ip(3), conn(3, later)));
        assert_eq!(evicted, Some(1));
        // The evicted connection's address may connect again.
        let (_, evicted) = admitted(table.admit(ip(1), conn(4, None)));
        assert_eq!(evicted, Some(3));
        assert!(matches!(
            table.admit(ip(1), conn(5, None)),
            Admission::Refused(Refusal::PerIp)
        ));
        assert!(table.evict_idle(5).is_empty(), "nobody idle");
        assert_eq!(table.drain().len(), 2);
        assert_eq!(table.len(), 0);
        admitted(table.admit(ip(1), conn(6, None)));
    }

    #[test]
    fn an_episode_is_reported_once_when_it_starts_and_once_when_it_ends() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut e = Episode::default();
        assert!(e.end_if_quiet(t0, s(1)).is_none(), "no episode yet");
        assert!(e.record(t0, 1, 0));
        assert!(!e.record(t0 + s(1), 0, 1));
        assert!(!e.record(t0 + s(2), 2, 0));
        assert!(e.end_if_quiet(t0 + s(2), s(1)).is_none(), "not quiet yet");
        let summary = e.end_if_quiet(t0 + s(3), s(1)).unwrap();
        assert_eq!(
            summary,
            Summary {
                lasted: s(2),
                evicted: 3,
                refused: 1
            }
        );
        assert!(e.end_if_quiet(t0 + s(9), s(1)).is_none(), "ended once");
        assert!(e.record(t0 + s(9), 0, 1), "a new episode");
        assert_eq!((e.evicted, e.refused), (0, 1));
    }
}
