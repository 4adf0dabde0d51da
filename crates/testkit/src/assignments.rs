//! Group assignments as the broker describes them (classic consumer protocol): who owns which
//! partitions, to wait for a group whose members all own work.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

use crate::TestEnv;

/// Per member id, the `(topic, partition)`s it owns.
pub type Assignment = BTreeMap<String, Vec<(String, i32)>>;

impl TestEnv {
    /// Polls the broker's description of `group` until it is `Stable` with exactly `members`
    /// members, every member owns at least one partition and `partitions` partitions are owned
    /// in all (each exactly once). Returns that assignment.
    ///
    /// # Panics
    /// When that does not happen within `timeout`, with the last description seen.
    pub async fn wait_for_assignments(
        &self,
        group: &str,
        members: usize,
        partitions: usize,
        timeout: Duration,
    ) -> Assignment {
        // Own client, so the blocking describe runs off the runtime the members run on.
        let client: Arc<AdminClient<DefaultClientContext>> = Arc::new(
            self.client_config()
                .create()
                .unwrap_or_else(|e| panic!("create admin client: {e}")),
        );
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            let (c, g) = (Arc::clone(&client), group.to_owned());
            let seen = tokio::task::spawn_blocking(move || describe_group(&c, &g))
                .await
                .unwrap_or_else(|e| panic!("describe group task: {e}"));
            if let Some((state, assignment)) = &seen {
                let owned: Vec<&(String, i32)> = assignment.values().flatten().collect();
                let distinct: std::collections::BTreeSet<&(String, i32)> =
                    owned.iter().copied().collect();
                if state == "Stable"
                    && assignment.len() == members
                    && assignment.values().all(|a| !a.is_empty())
                    && owned.len() == partitions
                    && distinct.len() == partitions
                {
                    return assignment.clone();
                }
            }
            if seen.is_some() {
                last = seen;
            }
            assert!(
                Instant::now() < deadline,
                "group {group} did not settle with {members} members owning {partitions} partitions \
                 within {timeout:?}: last seen {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The group's state and each member's assignment (`None` when the cluster cannot answer or
/// does not know the group yet).
fn describe_group(
    client: &AdminClient<DefaultClientContext>,
    group: &str,
) -> Option<(String, Assignment)> {
    let list = client
        .inner()
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .ok()?;
    let g = list.groups().iter().find(|g| g.name() == group)?;
    let members = g
        .members()
        .iter()
        .map(|m| {
            let parts = decode_assignment(m.assignment().unwrap_or_default())
                .unwrap_or_else(|| panic!("undecodable assignment of member {}", m.id()));
            (m.id().to_owned(), parts)
        })
        .collect();
    Some((g.state().to_owned(), members))
}

/// Decodes a classic consumer-protocol `Assignment` (version, `[topic, [partition]]`, user
/// data); empty bytes mean no assignment yet.
fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn i16_(b: &mut &[u8]) -> Option<i16> {
        Some(i16::from_be_bytes(take(b, 2)?.try_into().ok()?))
    }
    fn i32_(b: &mut &[u8]) -> Option<i32> {
        Some(i32::from_be_bytes(take(b, 4)?.try_into().ok()?))
    }
    let mut b = bytes;
    let mut out = Vec::new();
    if b.is_empty() {
        return Some(out);
    }
    let _version = i16_(&mut b)?;
    let topics = i32_(&mut b)?;
    for _ in 0..topics.max(0) {
        let len = usize::try_from(i16_(&mut b)?).ok()?;
        let topic = String::from_utf8(take(&mut b, len)?.to_vec()).ok()?;
        let n = i32_(&mut b)?;
        for _ in 0..n.max(0) {
            out.push((topic.clone(), i32_(&mut b)?));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_assignment;

    #[test]
    fn decodes_a_classic_assignment() {
        let mut b = vec![
            0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5,
        ];
        b.extend([0, 0, 0, 0]);
        assert_eq!(
            decode_assignment(&b),
            Some(vec![("t".to_owned(), 3), ("t".to_owned(), 5)])
        );
        assert_eq!(decode_assignment(&[]), Some(vec![]));
        assert_eq!(decode_assignment(&[0, 1, 0]), None);
    }
}
