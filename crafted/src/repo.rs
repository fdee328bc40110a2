//! A repository written object by object (raw object writes), and what it makes: a pack
//! of exactly its objects, a snapshot signing one of them.

use std::path::Path;

use ed25519_dalek::SigningKey;
use git2::{ObjectType, Oid, Repository};
use guts_protocol::{ObjectId, RefName, SignedRefs};

/// Git file modes.
pub const MODE_TREE: i32 = 0o040000;
pub const MODE_BLOB: i32 = 0o100644;

/// A bare repository of hand-written objects.
pub struct Crafted {
    dir: tempfile::TempDir,
    pub repo: Repository,
    objects: Vec<Oid>,
}

impl Default for Crafted {
    fn default() -> Self {
        Self::new()
    }
}

impl Crafted {
    pub fn new() -> Crafted {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = Repository::init_bare(dir.path()).expect("bare repository");
        Crafted {
            dir,
            repo,
            objects: Vec::new(),
        }
    }

    /// The bare repository's path (what `guts repo import` takes).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// An object of `kind` holding exactly `data`.
    pub fn write(&mut self, kind: ObjectType, data: &[u8]) -> Oid {
        let id = self
            .repo
            .odb()
            .expect("odb")
            .write(kind, data)
            .expect("write object");
        self.objects.push(id);
        id
    }

    pub fn blob(&mut self, data: &[u8]) -> Oid {
        self.write(ObjectType::Blob, data)
    }

    /// A tree of exactly these entries (sorted as git sorts them).
    pub fn tree(&mut self, entries: &[(&[u8], i32, Oid)]) -> Oid {
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|(name, mode, _)| {
            let mut k = name.to_vec();
            if *mode == MODE_TREE {
                k.push(b'/');
            }
            k
        });
        let mut data = Vec::new();
        for (name, mode, id) in sorted {
            data.extend(format!("{mode:o} ").as_bytes());
            data.extend(name);
            data.push(0);
            data.extend(id.as_bytes());
        }
        self.write(ObjectType::Tree, &data)
    }

    /// A chain of `levels` trees, the deepest holding one file; returns the top one.
    pub fn chain(&mut self, levels: usize) -> Oid {
        let file = self.blob(b"at the bottom\n");
        let mut top = self.tree(&[(b"file", MODE_BLOB, file)]);
        for _ in 1..levels {
            top = self.tree(&[(b"d", MODE_TREE, top)]);
        }
        top
    }

    /// A commit of `tree`, with no parent and no ref.
    pub fn commit(&mut self, tree: Oid) -> Oid {
        let text = format!(
            "tree {tree}\nauthor T <t@example.com> 0 +0000\ncommitter T <t@example.com> 0 +0000\n\ncrafted\n"
        );
        self.write(ObjectType::Commit, text.as_bytes())
    }

    /// An annotated tag of `target`, which it says is of type `kind`.
    pub fn tag(&mut self, target: Oid, kind: &str) -> Oid {
        let text = format!(
            "object {target}\ntype {kind}\ntag t\ntagger T <t@example.com> 0 +0000\n\ncrafted\n"
        );
        self.write(ObjectType::Tag, text.as_bytes())
    }

    /// A commit of `tree`, made `refs/heads/main` (and HEAD).
    pub fn commit_main(&mut self, tree: Oid) -> Oid {
        let commit = self.commit(tree);
        self.repo
            .reference("refs/heads/main", commit, true, "crafted")
            .expect("main");
        self.repo.set_head("refs/heads/main").expect("HEAD");
        commit
    }

    /// Every object written, in one pack (objects inserted one by one: no walk).
    pub fn pack(&self) -> Vec<u8> {
        let mut builder = self.repo.packbuilder().expect("pack builder");
        for id in &self.objects {
            builder.insert_object(*id, None).expect("insert");
        }
        let mut buf = git2::Buf::new();
        builder.write_buf(&mut buf).expect("write pack");
        buf.to_vec()
    }

    /// `commit` as `refs/heads/main` of repository `name`, signed by `key`.
    pub fn snapshot(&self, key: &SigningKey, name: &str, commit: Oid) -> SignedRefs {
        self.snapshot_of(key, name, &[("refs/heads/main", commit)])
    }

    /// `commit` as `refs/heads/main` and `target` as `refs/tags/t`.
    pub fn snapshot_with_tag(
        &self,
        key: &SigningKey,
        name: &str,
        commit: Oid,
        target: Oid,
    ) -> SignedRefs {
        self.snapshot_of(
            key,
            name,
            &[("refs/heads/main", commit), ("refs/tags/t", target)],
        )
    }

    /// These refs (the first is HEAD) of repository `name`, sequence 1, signed by `key`.
    pub fn snapshot_of(&self, key: &SigningKey, name: &str, refs: &[(&str, Oid)]) -> SignedRefs {
        let head: Option<RefName> = refs.first().map(|(r, _)| r.parse().expect("ref name"));
        let refs = refs
            .iter()
            .map(|(r, id)| (r.parse().expect("ref name"), object_id(*id)))
            .collect();
        SignedRefs::sign(key, name.parse().expect("repo name"), 1, head, refs).expect("sign")
    }
}

/// A git2 id as the protocol's.
pub fn object_id(id: Oid) -> ObjectId {
    let mut bytes = [0u8; 20];
    bytes.copy_from_slice(id.as_bytes());
    ObjectId(bytes)
}
