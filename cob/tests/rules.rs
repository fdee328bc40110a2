//! Who may do what, and what a graph leaves out.

mod common;

use std::collections::BTreeSet;

use common::*;
use guts_cob::patch::PatchState;
use guts_cob::{Action, Graph, Issue, Lifecycle, Moderation, Patch, Verdict};
use guts_protocol::ObjectId;
use guts_protocol::canonical::Ancestry;

fn open_issue(author: u8) -> Replica {
    let (root, c) = make(
        &key(author),
        None,
        vec![],
        1,
        Action::OpenIssue {
            title: "t".into(),
            body: "b".into(),
            labels: vec!["bug".parse().unwrap()],
        },
    );
    let mut r = Replica::default();
    r.take(root, &c);
    r
}

fn root(r: &Replica) -> guts_cob::ChangeId {
    r.all[0].0
}

#[test]
fn only_a_comments_author_edits_it_and_labels_are_the_maintainers() {
    let mut r = open_issue(2);
    let issue_id = root(&r);
    let comment = r.act(
        &key(3),
        issue_id,
        2,
        Action::Comment {
            body: "me too".into(),
            reply_to: None,
        },
    );
    let forged = r.act(
        &key(2),
        issue_id,
        3,
        Action::EditComment {
            comment,
            body: "spam".into(),
        },
    );
    let label = r.act(
        &key(3),
        issue_id,
        4,
        Action::Label {
            add: vec!["wontfix".parse().unwrap()],
            remove: vec![],
        },
    );
    r.act(
        &key(3),
        issue_id,
        5,
        Action::EditComment {
            comment,
            body: "me too!".into(),
        },
    );
    r.act(
        &key(1),
        issue_id,
        6,
        Action::Label {
            add: vec!["confirmed".parse().unwrap()],
            remove: vec![],
        },
    );
    let stranger_close = r.act(
        &key(3),
        issue_id,
        7,
        Action::SetState {
            state: Lifecycle::Closed,
        },
    );
    let id = identity();
    let none = BTreeSet::new();
    let issue = Issue::replay(r.graph.order_of(issue_id), &ctx(&id, &none)).unwrap();
    assert_eq!(issue.thread.comments[1].body, "me too!");
    assert!(issue.thread.comments[1].edited);
    // The opener is no maintainer: its labels at opening do not count either.
    assert_eq!(
        issue.labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(),
        ["confirmed"]
    );
    assert_eq!(issue.state, Lifecycle::Open);
    let skipped: Vec<_> = issue.skipped.iter().map(|(id, _)| *id).collect();
    assert_eq!(skipped, [forged, label, stranger_close]);
    assert!(issue.skipped[0].1.contains("not its author"));
}

#[test]
fn a_change_whose_parent_is_missing_or_of_another_object_is_left_out_with_what_follows() {
    let mut a = open_issue(2);
    let a_root = root(&a);
    let mut b = open_issue(3);
    let b_root = root(&b);
    let first = a.act(
        &key(2),
        a_root,
        2,
        Action::Comment {
            body: "one".into(),
            reply_to: None,
        },
    );
    // A change claiming issue A but following a change of issue B.
    let b_change = b.act(
        &key(3),
        b_root,
        2,
        Action::Comment {
            body: "b".into(),
            reply_to: None,
        },
    );
    let (cross, cross_c) = make(
        &key(3),
        Some(a_root),
        vec![b_change],
        3,
        Action::Comment {
            body: "cross".into(),
            reply_to: None,
        },
    );
    let (after, after_c) = make(
        &key(3),
        Some(a_root),
        vec![cross],
        4,
        Action::Comment {
            body: "after".into(),
            reply_to: None,
        },
    );
    // A change following one nobody has.
    let (dangling, dangling_c) = make(
        &key(3),
        Some(a_root),
        vec![ObjectId([9; 20])],
        5,
        Action::Comment {
            body: "?".into(),
            reply_to: None,
        },
    );
    // A patch action inside an issue.
    let (wrong_kind, wrong_c) = make(
        &key(2),
        Some(a_root),
        vec![first],
        6,
        Action::Revise {
            note: String::new(),
            base: ObjectId([1; 20]),
            head: ObjectId([2; 20]),
        },
    );
    a.sync_from(&b);
    for (id, c) in [
        (cross, &cross_c),
        (after, &after_c),
        (dangling, &dangling_c),
        (wrong_kind, &wrong_c),
    ] {
        a.take(id, c);
    }
    let order = a.graph.order_of(a_root);
    let ids: Vec<_> = order.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, [a_root, first]);
    assert_eq!(a.graph.tips(a_root), [first]);
    assert_eq!(a.graph.grouped().len(), 2, "both issues, nothing else");
}

#[test]
fn concurrent_comments_come_in_id_order_everywhere() {
    let mut a = open_issue(2);
    let r = root(&a);
    let mut c = a.clone();
    let x = a.act(
        &key(1),
        r,
        5,
        Action::Comment {
            body: "from A".into(),
            reply_to: None,
        },
    );
    let y = c.act(
        &key(3),
        r,
        4,
        Action::Comment {
            body: "from C".into(),
            reply_to: None,
        },
    );
    let c2 = c.clone();
    a.sync_from(&c2);
    c.sync_from(&a);
    let first = x.min(y);
    for g in [&a.graph, &c.graph] {
        let ids: Vec<_> = g.order_of(r).into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids[1], first);
        assert_eq!(ids.len(), 3);
    }
    // The next change follows both.
    let z = a.act(
        &key(2),
        r,
        6,
        Action::Comment {
            body: "both".into(),
            reply_to: None,
        },
    );
    assert_eq!(a.graph.get(&z).unwrap().parents, {
        let mut p = vec![x, y];
        p.sort();
        p
    });
}

/// Ancestry over a hand-made line of commits 1 -> 2 -> 3 (each descends from those before).
struct Line;

impl Ancestry for Line {
    fn descends(&self, d: ObjectId, a: ObjectId) -> bool {
        d.0[0] >= a.0[0] && d.0[1..] == a.0[1..]
    }
    fn merge_base(&self, a: ObjectId, b: ObjectId) -> Option<ObjectId> {
        Some(a.min(b))
    }
}

fn commit(n: u8) -> ObjectId {
    ObjectId([n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
}

#[test]
fn a_patch_revised_reviewed_and_merged_at_the_threshold() {
    let contributor = key(3);
    let (root, open) = make(
        &contributor,
        None,
        vec![],
        1,
        Action::OpenPatch {
            title: "fix".into(),
            description: "fixes it".into(),
            target: "refs/heads/main".parse().unwrap(),
            base: commit(1),
            head: commit(2),
            draft: true,
        },
    );
    let mut r = Replica::default();
    r.take(root, &open);
    let maintainer_draft = r.act(
        &key(1),
        root,
        2,
        Action::SetState {
            state: Lifecycle::Open,
        },
    );
    r.act(
        &contributor,
        root,
        3,
        Action::SetState {
            state: Lifecycle::Open,
        },
    );
    r.act(
        &key(2),
        root,
        4,
        Action::Review {
            revision: root,
            verdict: Some(Verdict::Reject),
            summary: "no".into(),
            comments: vec![],
        },
    );
    let rev2 = r.act(
        &contributor,
        root,
        5,
        Action::Revise {
            note: "addressed".into(),
            base: commit(1),
            head: commit(3),
        },
    );
    r.act(
        &key(2),
        root,
        6,
        Action::Review {
            revision: rev2,
            verdict: Some(Verdict::Reject),
            summary: "still no".into(),
            comments: vec![],
        },
    );
    r.act(
        &key(2),
        root,
        7,
        Action::Review {
            revision: rev2,
            verdict: Some(Verdict::Accept),
            summary: "ok".into(),
            comments: vec![guts_cob::CodeComment {
                path: "src/lib.rs".into(),
                line: Some(3),
                body: "nice".into(),
            }],
        },
    );
    let stranger_revise = r.act(
        &key(4),
        root,
        8,
        Action::Revise {
            note: "mine".into(),
            base: commit(1),
            head: commit(4),
        },
    );
    let id = identity();
    let none = BTreeSet::new();
    let patch = Patch::replay(r.graph.order_of(root), &ctx(&id, &none)).unwrap();
    assert_eq!(patch.revisions.len(), 2);
    assert_eq!(patch.latest().head, commit(3));
    let reviews = &patch.revisions[1].reviews;
    assert_eq!(
        reviews.len(),
        1,
        "a later review of the same revision replaces the earlier"
    );
    assert_eq!(
        reviews.values().next().unwrap().verdict,
        Some(Verdict::Accept)
    );
    assert_eq!(patch.revisions[0].reviews.len(), 1);
    let skipped: Vec<_> = patch.skipped.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        skipped,
        [stranger_revise],
        "a maintainer may open a draft for review: {maintainer_draft}"
    );
    assert_eq!(patch.state(None), PatchState::Open);

    // key(1) alone maintains (threshold 1): its main at 3 merges revision 2, at 2 only the first.
    let main = |at: u8| {
        move |k: &ed25519_dalek::VerifyingKey| (*k == key(1).verifying_key()).then_some(commit(at))
    };
    let merged = patch.merged_revision(&id, main(3), &Line).map(|r| r.id);
    assert_eq!(merged, Some(rev2));
    assert_eq!(
        patch.merged_revision(&id, main(2), &Line).map(|r| r.id),
        Some(root)
    );
    assert_eq!(patch.merged_revision(&id, main(1), &Line), None);

    // With two maintainers at threshold 2, one maintainer's branch is not enough.
    let two = id
        .next([key(1).verifying_key(), key(2).verifying_key()], 2)
        .unwrap();
    assert_eq!(patch.merged_revision(&two, main(3), &Line), None);
    let both = |k: &ed25519_dalek::VerifyingKey| two.is_maintainer(k).then_some(commit(3));
    assert_eq!(
        patch.merged_revision(&two, both, &Line).map(|r| r.id),
        Some(rev2)
    );
}

#[test]
fn maintainers_hide_keys_and_the_last_word_stands() {
    let mut graph = Graph::new();
    let spammer = key(5).verifying_key();
    let mut add = |author: u8, object, parents, ts, action| {
        let (id, c) = make(&key(author), object, parents, ts, action);
        graph.insert(id, c.change);
        id
    };
    let m = add(1, None, vec![], 1, Action::OpenModeration);
    let hide = add(1, Some(m), vec![m], 2, Action::Hide { key: spammer });
    // A stranger's own moderation object counts for nothing.
    let s = add(5, None, vec![], 3, Action::OpenModeration);
    add(5, Some(s), vec![s], 4, Action::Unhide { key: spammer });
    // Nor can a maintainer be hidden.
    add(
        1,
        Some(m),
        vec![hide],
        5,
        Action::Hide {
            key: key(1).verifying_key(),
        },
    );
    let id = identity();
    let moderation = Moderation::replay(&graph, &id);
    assert_eq!(moderation.hidden, BTreeSet::from([*spammer.as_bytes()]));

    // Hidden: the spammer's issue is not shown, its comments elsewhere are skipped.
    let mut r = open_issue(5);
    let spam = root(&r);
    let mut other = open_issue(2);
    let real = root(&other);
    other.act(
        &key(5),
        real,
        2,
        Action::Comment {
            body: "buy now".into(),
            reply_to: None,
        },
    );
    let c = ctx(&id, &moderation.hidden);
    assert!(Issue::replay(r.graph.order_of(spam), &c).is_none());
    let issue = Issue::replay(other.graph.order_of(real), &c).unwrap();
    assert_eq!(issue.thread.comments.len(), 1);
    r.act(
        &key(1),
        spam,
        9,
        Action::Comment {
            body: "x".into(),
            reply_to: None,
        },
    );
}
