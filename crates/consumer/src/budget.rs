//! One byte budget per member, split between librdkafka's prefetch and our in-flight window.
//!
//! Why both at once: librdkafka prefetches into its consumer queue on its own threads, and a
//! member holds records it handed to partition owners until they finish. Either alone can take
//! all the memory when the handler is slower than the fetcher, so one number bounds both:
//!
//! ```text
//! queued.max.messages.kbytes = B/2 / 1024    the prefetch queue stops being refilled above this
//! fetch.max.bytes            = B/4           one fetch response may overshoot the queue by this
//! max.partition.fetch.bytes  = min(1 MiB, B/4)
//! window                     = B/4           records handed to owners and not finished
//!                                            (split evenly over the partitions owned)
//! records held at most       ≈ B/2 + B/4 + B/4 = B
//! ```
//! A member consuming the retry topic runs a second consumer: each of the two gets half of the
//! member's budget. Process overhead (code, runtime, the retry/dead-letter producer's buffers,
//! per-record bookkeeping of at most `max_in_flight_per_partition` offsets per partition) comes
//! on top and does not grow with the backlog.

/// librdkafka requires `fetch.max.bytes` to be at least `message.max.bytes` (default 1 000 000).
const MIN_FETCH_MAX_BYTES: usize = 1_000_000;

/// How one consumer's share of the memory budget is spent (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryBudget {
    /// The share this split was made from, in bytes.
    pub total: usize,
    /// `queued.max.messages.kbytes`.
    pub prefetch_kbytes: usize,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: usize,
    /// `max.partition.fetch.bytes`.
    pub partition_fetch_max_bytes: usize,
    /// Bytes of records handed to partition owners and not finished, over all partitions.
    pub window_bytes: usize,
}

impl MemoryBudget {
    /// Splits `total` bytes.
    pub fn split(total: usize) -> MemoryBudget {
        let quarter = total / 4;
        MemoryBudget {
            total,
            prefetch_kbytes: (total / 2 / 1024).max(1),
            fetch_max_bytes: quarter.max(MIN_FETCH_MAX_BYTES),
            partition_fetch_max_bytes: quarter.clamp(1, 1 << 20),
            window_bytes: quarter.max(1),
        }
    }

    /// The window of one partition when `partitions` are owned.
    pub fn window_per_partition(&self, partitions: usize) -> usize {
        (self.window_bytes / partitions.max(1)).max(1)
    }

    /// The librdkafka properties this split sets.
    pub(crate) fn properties(&self) -> [(&'static str, String); 3] {
        [
            (
                "queued.max.messages.kbytes",
                self.prefetch_kbytes.to_string(),
            ),
            ("fetch.max.bytes", self.fetch_max_bytes.to_string()),
            (
                "max.partition.fetch.bytes",
                self.partition_fetch_max_bytes.to_string(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_add_up_to_the_budget() {
        for total in [4usize << 20, 64 << 20, 1 << 30] {
            let b = MemoryBudget::split(total);
            let held = b.prefetch_kbytes * 1024 + b.fetch_max_bytes + b.window_bytes;
            assert!(held <= total, "{b:?}");
            assert!(held >= total - 4096, "{b:?}");
            assert!(b.partition_fetch_max_bytes <= b.fetch_max_bytes);
        }
    }

    #[test]
    fn window_is_shared_by_the_owned_partitions() {
        let b = MemoryBudget::split(64 << 20);
        assert_eq!(b.window_per_partition(4), (16 << 20) / 4);
        assert_eq!(b.window_per_partition(0), 16 << 20);
    }
}
