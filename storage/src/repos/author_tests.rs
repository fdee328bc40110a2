//! Tests of [`super`].

use git2::Repository;

use crate::StorageError;
use crate::repos::test_support::{Fixture, fsck, git_push, key, store};

#[test]
fn import_signs_branches_tags_and_head() {
    let fx = Fixture::new();
    let (_d, repos) = store();
    let imported = repos.import(fx.path(), None, &key(1)).unwrap();
    assert!(imported.changed);
    let s = imported.snapshot;
    s.verify().unwrap();
    assert_eq!(s.sequence(), 1);
    assert_eq!(s.signed.header.name.as_str(), "demo");
    let names: Vec<&str> = s.refs.keys().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "refs/heads/feature",
            "refs/heads/main",
            "refs/tags/v0",
            "refs/tags/v1"
        ]
    );
    assert_eq!(
        s.signed.header.head.as_ref().unwrap().as_str(),
        "refs/heads/main"
    );
    assert_eq!(repos.list().unwrap(), vec![s.repository()]);
    assert_eq!(repos.signed_refs(&s.repository()).unwrap().unwrap(), s);
    fsck(&repos.path(&s.repository()));
    // Nothing changed: no new snapshot.
    assert!(!repos.import(fx.path(), None, &key(1)).unwrap().changed);
    // A new commit: sequence 2.
    let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
    fx.commit("refs/heads/main", &[("README", "more\n")], &[main]);
    let again = repos.import(fx.path(), None, &key(1)).unwrap();
    assert!(again.changed);
    assert_eq!(again.snapshot.sequence(), 2);
}

#[test]
fn import_errors_name_the_path() {
    let (_d, repos) = store();
    let dir = tempfile::tempdir().unwrap();
    let err = repos.import(dir.path(), None, &key(1)).unwrap_err();
    assert!(
        matches!(err, StorageError::NotAGitRepository { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    let empty = Repository::init(dir.path().join("empty")).unwrap();
    let err = repos
        .import(empty.workdir().unwrap(), None, &key(1))
        .unwrap_err();
    assert!(matches!(err, StorageError::NothingToImport { .. }), "{err}");
}

#[test]
fn only_a_push_area_of_the_repository_is_taken_or_removed() {
    let fx = Fixture::new();
    let (_d, repos) = store();
    let id = repos
        .import(fx.path(), None, &key(1))
        .unwrap()
        .snapshot
        .repository();
    let area = repos.create_staging(&id, &key(1)).unwrap();
    let repo = repos.path(&id);
    // A victim directory beside the store, named like a push area.
    let victim = repo.parent().unwrap().join("guts-push-00112233aabbccdd");
    std::fs::create_dir_all(&victim).unwrap();
    let name = area.file_name().unwrap().to_owned();
    let link = repo.join("guts-push-ffffffffffffffff");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for bad in [
        repo.join("..").join("guts-push-00112233aabbccdd"),
        repo.join(&name)
            .join("..")
            .join("..")
            .join("guts-push-00112233aabbccdd"),
        area.join(".").join("..").join(&name),
        repo.join("guts-push-nothex"),
        repo.join("objects"),
        victim.clone(),
        link.clone(),
    ] {
        let err = repos.push(&id, &bad, &[], &key(1)).unwrap_err();
        assert!(
            matches!(err, StorageError::BadStaging(_)),
            "{}: {err}",
            bad.display()
        );
    }
    assert!(victim.exists(), "a refused push removes nothing");
    assert!(area.exists());
    repos.push(&id, &area, &[], &key(1)).unwrap();
    assert!(!area.exists(), "a push removes its own area");
}

#[test]
fn a_pushed_pack_is_checked_and_kept_where_git_indexed_it() {
    let fx = Fixture::new();
    let (_d, repos) = store();
    let id = repos
        .import(fx.path(), None, &key(1))
        .unwrap()
        .snapshot
        .repository();
    let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
    let new = fx.commit("refs/heads/main", &[("README", "pushed\n")], &[main]);
    let update = crate::RefUpdate {
        name: "refs/heads/main".into(),
        new: Some(crate::repos::object_id(new)),
        force: false,
    };

    // A pack whose last entry (a blob: git writes commits first) no longer inflates:
    // the commit still reads, so the refusal is the in-place check's. Nothing is
    // kept, nothing signed.
    let area = repos.create_staging(&id, &key(1)).unwrap();
    let packs = git_push(&fx, &area, &format!("{new}:refs/heads/main"));
    assert_eq!(packs.len(), 1, "git kept a pack");
    let pack = area.join("objects/pack").join(&packs[0]);
    let mut bytes = std::fs::read(&pack).unwrap();
    // Just before the 20-byte trailer: the last entry's zlib checksum.
    let last = bytes.len() - 21;
    bytes[last] ^= 0xff;
    std::fs::set_permissions(&pack, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&pack, bytes).unwrap();
    let before = std::fs::read_dir(repos.path(&id).join("objects/pack"))
        .unwrap()
        .count();
    let err = repos
        .push(&id, &area, std::slice::from_ref(&update), &key(1))
        .unwrap_err();
    assert!(matches!(err, StorageError::BadPack(_)), "{err}");
    assert_eq!(repos.signed_refs(&id).unwrap().unwrap().sequence(), 1);
    assert_eq!(
        std::fs::read_dir(repos.path(&id).join("objects/pack"))
            .unwrap()
            .count(),
        before
    );

    // The same push intact: its pack is checked where it is and moved in as it is.
    let area = repos.create_staging(&id, &key(1)).unwrap();
    let packs = git_push(&fx, &area, &format!("{new}:refs/heads/main"));
    let pushed = repos.push(&id, &area, &[update], &key(1)).unwrap();
    assert!(pushed.changed);
    assert_eq!(pushed.snapshot.sequence(), 2);
    assert!(
        repos
            .path(&id)
            .join("objects/pack")
            .join(&packs[0])
            .is_file(),
        "the pack git indexed is the one kept"
    );
    fsck(&repos.path(&id));
}

/// The object ids in a pack, as git's own index-pack reads them.
fn pack_ids(pack: &[u8]) -> std::collections::HashSet<git2::Oid> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.pack");
    std::fs::write(&file, pack).unwrap();
    let indexed = std::process::Command::new("git")
        .args(["index-pack"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(indexed.status.success(), "{indexed:?}");
    let idx = std::fs::File::open(file.with_extension("idx")).unwrap();
    let listed = std::process::Command::new("git")
        .arg("show-index")
        .stdin(idx)
        .output()
        .unwrap();
    String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn objects_of_refused_updates_are_never_served() {
    let fx = Fixture::new();
    let (_d, repos) = store();
    let id = repos
        .init("pushed".parse().unwrap(), &key(1))
        .unwrap()
        .repository();
    let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
    // A commit only a refused update reaches: a ref outside heads and tags.
    let secret = fx.commit(
        "refs/heads/secret",
        &[("secret", "do not pass on\n")],
        &[main],
    );
    let update = |name: &str, new: git2::Oid| crate::RefUpdate {
        name: name.into(),
        new: Some(crate::repos::object_id(new)),
        force: false,
    };
    let area = repos.create_staging(&id, &key(1)).unwrap();
    // One push, one pack, holding both.
    let packs = git_push(
        &fx,
        &area,
        &format!("{main}:refs/heads/main {secret}:refs/notes/secret"),
    );
    assert_eq!(packs.len(), 1);
    let pushed = repos
        .push(
            &id,
            &area,
            &[
                update("refs/heads/main", main),
                update("refs/notes/secret", secret),
            ],
            &key(1),
        )
        .unwrap();
    assert!(pushed.results[0].1.is_ok());
    assert!(pushed.results[1].1.is_err(), "{:?}", pushed.results);

    // A requester with nothing asks for everything the snapshot names.
    let wants: Vec<_> = pushed.snapshot.refs.values().copied().collect();
    let mut served = Vec::new();
    repos
        .build_pack(&id, &wants, &[], &mut |_| {}, &mut |c| {
            served.extend_from_slice(c);
            true
        })
        .unwrap();
    let ids = pack_ids(&served);
    assert!(ids.contains(&main));
    assert!(!ids.contains(&secret), "a refused commit was served");

    // After a repack the one pack is clean, and sent as it is.
    repos.repack(&id).unwrap();
    let stored = std::fs::read(repos.packs(&id).unwrap().pop().unwrap()).unwrap();
    assert!(
        !pack_ids(&stored).contains(&secret),
        "a repack keeps only what is reached"
    );
    let mut again = Vec::new();
    repos
        .build_pack(&id, &wants, &[], &mut |_| {}, &mut |c| {
            again.extend_from_slice(c);
            true
        })
        .unwrap();
    assert_eq!(again, stored, "the clean pack is sent as it is");
}

#[test]
fn nothing_is_signed_at_or_below_a_sequence_seen_on_the_network() {
    let fx = Fixture::new();
    let (_d, repos) = store();
    let first = repos.import(fx.path(), None, &key(1)).unwrap().snapshot;
    let id = first.repository();
    // Another machine with this key signed sequence 2 (the node heard of it).
    let repos = repos.with_seen_elsewhere(move |r| (*r == id).then_some(2));
    let main = fx.repo.refname_to_id("refs/heads/main").unwrap();
    fx.commit("refs/heads/main", &[("README", "diverged\n")], &[main]);
    let err = repos.import(fx.path(), None, &key(1)).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::BehindNetwork {
                held: 1,
                network: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("guts repo sync"), "{err}");
    assert_eq!(
        repos.signed_refs(&id).unwrap().unwrap(),
        first,
        "nothing signed"
    );
    let area = repos.create_staging(&id, &key(1)).unwrap();
    let delete = crate::RefUpdate {
        name: "refs/tags/v0".into(),
        new: None,
        force: true,
    };
    let err = repos.push(&id, &area, &[delete], &key(1)).unwrap_err();
    assert!(matches!(err, StorageError::BehindNetwork { .. }), "{err}");
    let fresh = repos.with_seen_elsewhere(|_| Some(1));
    let err = fresh.init("other".parse().unwrap(), &key(1)).unwrap_err();
    assert!(
        matches!(err, StorageError::BehindNetwork { held: 0, .. }),
        "{err}"
    );
}
