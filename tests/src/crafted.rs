//! Repositories written object by object, as a hostile owner would: trees nested without
//! limit, entry names git refuses. Nothing on the way in vets them (raw object writes).

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

    fn write(&mut self, kind: ObjectType, data: &[u8]) -> Oid {
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

    /// A commit of `tree`, made `refs/heads/main` (and HEAD).
    pub fn commit_main(&mut self, tree: Oid) -> Oid {
        let text = format!(
            "tree {tree}\nauthor T <t@example.com> 0 +0000\ncommitter T <t@example.com> 0 +0000\n\ncrafted\n"
        );
        let commit = self.write(ObjectType::Commit, text.as_bytes());
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
        let main: RefName = "refs/heads/main".parse().expect("ref name");
        let mut target = [0u8; 20];
        target.copy_from_slice(commit.as_bytes());
        let refs = [(main.clone(), ObjectId(target))].into_iter().collect();
        SignedRefs::sign(key, name.parse().expect("repo name"), 1, Some(main), refs).expect("sign")
    }
}
