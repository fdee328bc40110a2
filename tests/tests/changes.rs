//! Patches and issues replicate between real nodes: a node's sync brings a holder's
//! changes over sync 1.2.0 and its pack protocol, checked in the receiving store.

use std::collections::BTreeSet;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use guts_cob::{Action, Change, ChangeId, Context, Issue, SignedChange};
use guts_protocol::RepositoryId;
use guts_storage::Repositories;
use guts_tests::cluster::TestNode;
use guts_tests::eventually_async;
use guts_tests::git::WorkRepo;

fn signed(
    repos: &Repositories,
    id: RepositoryId,
    author: &SigningKey,
    object: Option<ChangeId>,
    action: Action,
) -> SignedChange {
    let parents = object
        .map(|o| {
            let mut p = repos
                .change_tips(&id)
                .unwrap()
                .remove(&o)
                .unwrap_or_default();
            p.sort();
            p
        })
        .unwrap_or_default();
    let change = Change {
        repository: id,
        object,
        parents,
        author: author.verifying_key(),
        timestamp: 1_700_000_000,
        action,
    };
    SignedChange::sign(change, author).unwrap()
}

fn issues(repos: &Repositories, id: RepositoryId) -> Vec<Issue> {
    let held = repos.held(&id).unwrap().unwrap().into_state();
    let doc = held.identity.current().clone();
    let none = BTreeSet::new();
    let ctx = Context {
        identity: &doc,
        silenced: &none,
    };
    repos
        .changes(&id)
        .unwrap()
        .grouped()
        .into_values()
        .filter_map(|c| Issue::replay(c, &ctx))
        .collect()
}

/// An issue and a comment written on A reach B at B's next sync, whole, and show the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issue_written_on_one_node_reaches_another_at_its_sync() {
    let a = TestNode::start(|_| {}).await;
    let boot = a.addr.clone();
    let b = TestNode::start(|c| c.net.bootstrap = vec![boot]).await;
    b.wait_for_peers(1, Duration::from_secs(30)).await;
    let work = WorkRepo::with_history("demo");
    let (summary, _) = a.handle.import(work.path().to_owned(), None).await.unwrap();
    let id: RepositoryId = summary.id.parse().unwrap();
    b.handle.follow(id).await.unwrap();
    let a_peer = a.handle.peer_id();
    b.handle.sync(id, Some(a_peer), None).await.unwrap();

    // Written into A's store beside the running node, as its API will.
    let on_a = Repositories::new(a.data_dir());
    let reporter = SigningKey::from_bytes(&[7; 32]);
    let open = on_a
        .write_change(
            &id,
            &signed(
                &on_a,
                id,
                &reporter,
                None,
                Action::OpenIssue {
                    title: "crash on start".into(),
                    body: "it crashes".into(),
                    labels: vec![],
                },
            ),
        )
        .unwrap();
    on_a.write_change(
        &id,
        &signed(
            &on_a,
            id,
            &reporter,
            Some(open),
            Action::Comment {
                body: "with a backtrace".into(),
                reply_to: Some(open),
            },
        ),
    )
    .unwrap();

    let on_b = Repositories::new(b.data_dir());
    eventually_async(Duration::from_secs(30), "the issue on B", || async {
        b.handle
            .sync(id, Some(a_peer), None)
            .await
            .map_err(|e| e.to_string())?;
        match on_b.changes(&id).map_err(|e| e.to_string())?.len() {
            2 => Ok(()),
            n => Err(format!("{n} changes")),
        }
    })
    .await;
    let seen = issues(&on_b, id);
    assert_eq!(seen, issues(&on_a, id));
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].title, "crash on start");
    assert_eq!(seen[0].thread.comments.len(), 2);
    assert_eq!(
        on_b.change_tips(&id).unwrap(),
        on_a.change_tips(&id).unwrap()
    );
    a.shutdown().await;
    b.shutdown().await;
}
