//! The node's health as the routers should see it, and its drain. Pure
//! state: `announce` feeds it one check every interval and acts on the
//! verdict.
//!
//! Healthy means: the engine is attached and forwarding, every announced
//! frontend's pool has at least `min_backends` usable backends, and the node
//! is not drained. A failed check withdraws at once; `rise` good checks in
//! a row announce again, so a flapping engine or pool does not make the
//! routers rehash every few hundred milliseconds.

use std::time::{Duration, Instant};

use serde::Serialize;

/// One check's findings; empty `problems` is a healthy check.
#[derive(Debug, Clone, Default)]
pub struct Check {
    pub problems: Vec<String>,
    /// Queries the announced frontends received so far (engine counters).
    pub frontend_queries: u64,
    pub in_flight: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Drain {
    /// Serving (or trying to: see the health).
    Active,
    /// Withdrawn on purpose; queries still arrive or are in flight.
    Draining,
    /// Withdrawn, and nothing arrived for `drain_quiet_ms` with nothing in
    /// flight: the engine can be stopped without losing a query.
    Drained,
}

#[derive(Debug)]
pub struct Node {
    rise: u32,
    quiet: Duration,
    healthy: bool,
    /// Good checks in a row while unhealthy.
    streak: u32,
    drained: bool,
    drain: Drain,
    /// What is wrong now (empty when healthy and not drained).
    problems: Vec<String>,
    last_queries: Option<u64>,
    quiet_since: Instant,
    pub since: Instant,
}

impl Node {
    /// `was_healthy`: a previous ctl announced (read back from BIRD's
    /// file), so a first good check keeps the routes without a new rise;
    /// `drained`: a drain survives a ctl restart.
    pub fn new(rise: u32, quiet: Duration, was_healthy: bool, drained: bool, now: Instant) -> Node {
        Node {
            rise,
            quiet,
            healthy: was_healthy && !drained,
            streak: 0,
            drained,
            drain: if drained {
                Drain::Draining
            } else {
                Drain::Active
            },
            problems: Vec::new(),
            last_queries: None,
            quiet_since: now,
            since: now,
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy
    }

    pub fn drain(&self) -> Drain {
        self.drain
    }

    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Good checks still needed before the node announces.
    pub fn rising(&self) -> Option<u32> {
        (!self.healthy && self.problems.is_empty() && !self.drained)
            .then(|| self.rise.saturating_sub(self.streak))
    }

    pub fn set_drained(&mut self, drained: bool, now: Instant) {
        if drained == self.drained {
            return;
        }
        self.drained = drained;
        if drained {
            self.drain = Drain::Draining;
            self.quiet_since = now;
            if self.healthy {
                self.healthy = false;
                self.since = now;
            }
        } else {
            self.drain = Drain::Active;
        }
        self.streak = 0;
    }

    /// One check. Returns the new health when it changed.
    pub fn observe(&mut self, c: &Check, now: Instant) -> Option<bool> {
        self.problems.clone_from(&c.problems);
        if self.drained {
            self.problems.push("drained".into());
        }
        // The drain's progress: quiet since the counters last moved.
        if self.last_queries != Some(c.frontend_queries) || c.in_flight > 0 {
            self.quiet_since = now;
        }
        self.last_queries = Some(c.frontend_queries);
        if self.drained {
            self.drain = if now.duration_since(self.quiet_since) >= self.quiet {
                Drain::Drained
            } else {
                Drain::Draining
            };
        }
        let was = self.healthy;
        if !self.problems.is_empty() {
            self.streak = 0;
            self.healthy = false;
        } else if !self.healthy {
            self.streak += 1;
            if self.streak >= self.rise {
                self.healthy = true;
                self.streak = 0;
            }
        }
        (was != self.healthy).then(|| {
            self.since = now;
            self.healthy
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: u64) -> Check {
        Check {
            frontend_queries: q,
            ..Check::default()
        }
    }

    fn bad(why: &str) -> Check {
        Check {
            problems: vec![why.into()],
            ..Check::default()
        }
    }

    #[test]
    fn down_at_once_up_after_rise_good_checks_in_a_row() {
        let t = Instant::now();
        let mut n = Node::new(3, Duration::from_secs(1), false, false, t);
        assert_eq!(n.observe(&ok(0), t), None);
        assert_eq!(n.rising(), Some(2));
        assert_eq!(n.observe(&ok(0), t), None);
        // A bad check in the middle starts the count again.
        assert_eq!(n.observe(&bad("engine not attached"), t), None);
        assert_eq!(n.problems(), ["engine not attached"]);
        assert_eq!(n.observe(&ok(0), t), None);
        assert_eq!(n.observe(&ok(0), t), None);
        assert_eq!(n.observe(&ok(0), t), Some(true));
        assert!(n.healthy());
        assert_eq!(n.observe(&ok(0), t), None);
        assert_eq!(
            n.observe(&bad("pool default: 0 usable backends"), t),
            Some(false)
        );
        assert!(!n.healthy());
    }

    #[test]
    fn a_node_a_previous_ctl_announced_stays_up_on_a_good_first_check() {
        let t = Instant::now();
        let mut n = Node::new(3, Duration::from_secs(1), true, false, t);
        assert!(n.healthy());
        assert_eq!(n.observe(&ok(5), t), None);
        assert!(n.healthy());
        let mut n = Node::new(3, Duration::from_secs(1), true, false, t);
        assert_eq!(n.observe(&bad("engine not attached"), t), Some(false));
    }

    #[test]
    fn a_drain_withdraws_and_completes_when_queries_stop() {
        let t = Instant::now();
        let ms = |m| t + Duration::from_millis(m);
        let mut n = Node::new(1, Duration::from_millis(500), true, false, t);
        n.observe(&ok(100), t);
        n.set_drained(true, ms(10));
        assert!(!n.healthy());
        assert_eq!(n.drain(), Drain::Draining);
        // Queries still arriving (routers converging).
        n.observe(&ok(150), ms(200));
        n.observe(&ok(180), ms(400));
        assert_eq!(n.drain(), Drain::Draining);
        // Quiet, but one still in flight.
        n.observe(
            &Check {
                frontend_queries: 180,
                in_flight: 1,
                ..Check::default()
            },
            ms(800),
        );
        n.observe(&ok(180), ms(1000));
        assert_eq!(n.drain(), Drain::Draining, "in flight until 800 ms");
        n.observe(&ok(180), ms(1300));
        assert_eq!(n.drain(), Drain::Drained);
        assert!(!n.healthy());
        assert_eq!(n.problems(), ["drained"]);
        // Undrain: back after rise.
        n.set_drained(false, ms(1400));
        assert_eq!(n.drain(), Drain::Active);
        assert_eq!(n.observe(&ok(180), ms(1600)), Some(true));
    }

    #[test]
    fn a_drain_survives_a_restart() {
        let t = Instant::now();
        let mut n = Node::new(1, Duration::from_millis(100), true, true, t);
        assert!(!n.healthy());
        assert_eq!(n.observe(&ok(0), t), None);
        assert!(!n.healthy());
        assert_eq!(n.observe(&ok(0), t + Duration::from_millis(200)), None);
        assert_eq!(n.drain(), Drain::Drained);
    }
}
