//! How much each development stand-in remembers: a window of the newest requests, so a
//! long-running `serve` keeps bounded memory. A leaf of `dev`: the stand-ins use it, it uses
//! none of them.

/// What each stand-in remembers at most: the newest this many requests per provider, enough
/// for the demo and the tests; older ones are forgotten (a booking that old answers 404), so
/// a long-running `serve` keeps bounded memory.
pub(super) const WINDOW: usize = 1_000;

/// Append `item` to `list`, forgetting the oldest beyond [`WINDOW`].
pub(super) fn remember<T>(list: &mut Vec<T>, item: T) {
    list.push(item);
    if list.len() > WINDOW {
        let excess = list.len() - WINDOW;
        list.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_newest_window_is_kept() {
        let mut list = Vec::new();
        for n in 0..WINDOW + 5 {
            remember(&mut list, n);
        }
        assert_eq!(list.len(), WINDOW);
        assert_eq!(list.first(), Some(&5));
        assert_eq!(list.last(), Some(&(WINDOW + 4)));
    }
}
