//! Reading `ConsumerGroupCommand --describe --members --verbose` output (it answers for both
//! group protocols, unlike the classic DescribeGroups call).

/// Per member line of the describe output, how many partitions of `topic` its assignment holds
/// (the `ASSIGNMENT` column, or `CURRENT-ASSIGNMENT` for KIP-848 groups), largest first.
/// Assignments print as `topic:0,1,2`, several topics separated by `;`, none as `-`.
pub fn partitions_per_member(describe: &str, group: &str, topic: &str) -> Vec<usize> {
    let mut column = None;
    let mut spread: Vec<usize> = Vec::new();
    for line in describe.lines() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        if cells.first() == Some(&"GROUP") {
            column = cells
                .iter()
                .position(|c| *c == "ASSIGNMENT" || *c == "CURRENT-ASSIGNMENT");
        } else if cells.first() == Some(&group)
            && let Some(cell) = column.and_then(|i| cells.get(i))
        {
            spread.push(
                cell.split(';')
                    .filter_map(|t| t.strip_prefix(topic)?.strip_prefix(':'))
                    .map(|ps| ps.split(',').filter(|p| !p.is_empty()).count())
                    .sum(),
            );
        }
    }
    spread.sort_unstable_by(|a, b| b.cmp(a));
    spread
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_protocols_are_parsed() {
        let classic = "\nGROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS ASSIGNMENT\n\
                       g m1 /127.0.0.1 rdkafka 2 t:0,3\n\
                       g m2 /127.0.0.1 rdkafka 5 t:1,2,4,5;t.retry:0\n";
        assert_eq!(partitions_per_member(classic, "g", "t"), vec![4, 2]);
        let kip848 = "GROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS CURRENT-EPOCH \
                      CURRENT-ASSIGNMENT TARGET-EPOCH TARGET-ASSIGNMENT\n\
                      g m3 /127.0.0.1 rdkafka 0 1 - 2 t:1\n\
                      g m4 /127.0.0.1 rdkafka 1 2 t:0 2 t:0\n";
        assert_eq!(partitions_per_member(kip848, "g", "t"), vec![1, 0]);
    }
}
