//! Any two nodes that hold the same changes show the same issue, whatever order the
//! changes were made, exchanged and taken in.

mod common;

use std::collections::BTreeSet;

use common::*;
use guts_cob::{Action, ChangeId, Graph, Issue, Label, Lifecycle};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Replica r's author acts.
    Act {
        replica: usize,
        action: u8,
        pick: usize,
    },
    /// Replica r takes everything replica s holds.
    Sync { to: usize, from: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..3usize, 0..8u8, any::<usize>()).prop_map(|(replica, action, pick)| Op::Act { replica, action, pick }),
        1 => (0..3usize, 0..3usize).prop_map(|(to, from)| Op::Sync { to, from }),
    ]
}

fn action(kind: u8, pick: usize, comments: &[ChangeId], n: usize) -> Action {
    let comment = comments[pick % comments.len()];
    match kind {
        0 | 1 => Action::Comment {
            body: format!("comment {n}"),
            reply_to: pick.is_multiple_of(3).then_some(comment),
        },
        2 => Action::EditComment {
            comment,
            body: format!("edited {n}"),
        },
        3 => Action::Label {
            add: vec![format!("l{}", pick % 4).parse::<Label>().unwrap()],
            remove: vec![format!("l{}", (pick / 4) % 4).parse::<Label>().unwrap()],
        },
        4 => Action::SetState {
            state: if pick.is_multiple_of(2) {
                Lifecycle::Closed
            } else {
                Lifecycle::Open
            },
        },
        5 => Action::Retitle {
            title: format!("title {n}"),
        },
        6 => Action::Assign {
            add: vec![key((pick % 3) as u8 + 1).verifying_key()],
            remove: vec![],
        },
        _ => Action::SetState {
            state: Lifecycle::Draft,
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn replicas_that_hold_the_same_changes_show_the_same_issue(
        ops in proptest::collection::vec(op(), 1..40),
        seed in any::<u64>(),
    ) {
        // key(1) maintains; key(2) opened the issue; key(3) is a stranger.
        let authors = [key(1), key(2), key(3)];
        let (root, open) = make(&authors[1], None, vec![], 10, Action::OpenIssue {
            title: "it crashes".into(),
            body: "on start".into(),
            labels: vec!["bug".parse().unwrap()],
        });
        let mut replicas = vec![Replica::default(); 3];
        for r in &mut replicas {
            r.take(root, &open);
        }
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Act { replica, action: kind, pick } => {
                    let comments: Vec<ChangeId> = {
                        let id = identity();
                        let none = BTreeSet::new();
                        let issue = Issue::replay(replicas[replica].graph.order_of(root), &ctx(&id, &none)).unwrap();
                        issue.thread.comments.iter().map(|c| c.id).collect()
                    };
                    let a = action(kind, pick, &comments, n);
                    replicas[replica].act(&authors[replica], root, 100 + n as u64, a);
                }
                Op::Sync { to, from } if to != from => {
                    let from = replicas[from].clone();
                    replicas[to].sync_from(&from);
                }
                Op::Sync { .. } => {}
            }
        }
        // Heal: everyone takes everything.
        for _ in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    let from = replicas[j].clone();
                    replicas[i].sync_from(&from);
                }
            }
        }
        let id = identity();
        let none = BTreeSet::new();
        let states: Vec<Issue> = replicas
            .iter()
            .map(|r| Issue::replay(r.graph.order_of(root), &ctx(&id, &none)).unwrap())
            .collect();
        prop_assert_eq!(&states[0], &states[1]);
        prop_assert_eq!(&states[0], &states[2]);

        // The same changes taken one at a time in a shuffled order, replaying after each.
        let mut all = replicas[0].all.clone();
        let mut s = seed | 1;
        for i in (1..all.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            all.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut graph = Graph::new();
        for (cid, c) in &all {
            graph.insert(*cid, c.change.clone());
            let _ = Issue::replay(graph.order_of(root), &ctx(&id, &none));
        }
        let shuffled = Issue::replay(graph.order_of(root), &ctx(&id, &none)).unwrap();
        prop_assert_eq!(&shuffled, &states[0]);

        // Rules hold in the result: labels only from the maintainer (or its opening),
        // edits only by authors, never a draft.
        prop_assert!(shuffled.state != Lifecycle::Draft);
        for c in &shuffled.thread.comments {
            if c.edited {
                prop_assert!(c.body.starts_with("edited"));
            }
        }
        prop_assert!(shuffled.labels.is_empty() || replicas[0].all.iter().any(|(_, c)| c.change.author == authors[0].verifying_key()));
    }
}
