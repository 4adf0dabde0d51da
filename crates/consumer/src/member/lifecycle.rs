//! The life of one partition's owner: Consuming → Draining → Complete (pure, no I/O).
//!
//! Why explicit: revoke, loss and shutdown all end an owner, at different moments relative to
//! the records it holds. The phase decides what an owner may still do: only a Consuming owner
//! takes new records; a Draining one lets running records finish (so their offsets can be
//! committed) and drops queued ones; a Complete one does nothing more.

/// The phase of a partition owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Takes records and runs them.
    Consuming,
    /// Stopped: runs nothing new; waits for running records.
    Draining,
    /// Done. `abandoned`: records were still running and were cancelled (their offsets stay
    /// uncommitted and are redelivered to the next owner).
    Complete { abandoned: bool },
}

impl Phase {
    /// Whether new records may be started.
    pub(crate) fn takes_records(self) -> bool {
        self == Phase::Consuming
    }

    /// Revoke, loss or shutdown asked the owner to stop.
    #[must_use]
    pub(crate) fn stop(self) -> Phase {
        match self {
            Phase::Consuming => Phase::Draining,
            other => other,
        }
    }

    /// The drain deadline passed: whatever still runs is cancelled.
    #[must_use]
    pub(crate) fn kill(self, running: usize) -> Phase {
        match self {
            Phase::Complete { .. } => self,
            _ => Phase::Complete {
                abandoned: running > 0,
            },
        }
    }

    /// After records finished: a draining owner with nothing running is complete.
    #[must_use]
    pub(crate) fn settle(self, running: usize) -> Phase {
        match self {
            Phase::Draining if running == 0 => Phase::Complete { abandoned: false },
            other => other,
        }
    }

    pub(crate) fn is_complete(self) -> bool {
        matches!(self, Phase::Complete { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_completes_when_nothing_runs() {
        let p = Phase::Consuming;
        assert!(p.takes_records());
        assert_eq!(
            p.settle(0),
            Phase::Consuming,
            "idle is not the end while consuming"
        );
        let d = p.stop();
        assert!(!d.takes_records());
        assert_eq!(d.settle(2), Phase::Draining);
        assert_eq!(d.settle(0), Phase::Complete { abandoned: false });
    }

    #[test]
    fn kill_abandons_running_records_only() {
        assert_eq!(Phase::Draining.kill(3), Phase::Complete { abandoned: true });
        assert_eq!(
            Phase::Consuming.kill(0),
            Phase::Complete { abandoned: false }
        );
        let done = Phase::Complete { abandoned: false };
        assert_eq!(done.kill(5), done, "complete stays complete");
        assert_eq!(done.stop(), done);
    }
}
