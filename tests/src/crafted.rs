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

/// A delta's size varint (7 bits a byte, low first).
pub fn delta_varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// How far back an `OFS_DELTA` entry's base starts, in git's offset encoding (7 bits a
/// byte, high first, each continuation byte counting one more).
pub fn ofs_delta_offset(mut back: u64) -> Vec<u8> {
    let mut offset = vec![(back & 0x7f) as u8];
    back >>= 7;
    while back > 0 {
        back -= 1;
        offset.insert(0, 0x80 | (back & 0x7f) as u8);
        back >>= 7;
    }
    offset
}

/// A pack of two entries: a 64 KiB blob, and a delta on it that builds an object of
/// `result` bytes by copying the blob again and again. A few KiB on the wire.
pub fn delta_bomb(result: u64) -> Vec<u8> {
    use std::io::Write;
    let zlib = |data: &[u8]| {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).expect("deflate");
        e.finish().expect("deflate")
    };
    // Type in bits 4-6 of the first byte, the size in 4 bits then 7 per byte.
    let entry = |kind: u8, mut size: u64| {
        let mut out = vec![(kind << 4) | (size & 0x0f) as u8];
        size >>= 4;
        while size > 0 {
            *out.last_mut().expect("a byte") |= 0x80;
            out.push((size & 0x7f) as u8);
            size >>= 7;
        }
        out
    };
    let base: Vec<u8> = (0..65_536u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut delta = delta_varint(base.len() as u64);
    delta.extend(delta_varint(result));
    // Each 0x80 copies 0x10000 bytes from offset 0 of the base.
    delta.extend(std::iter::repeat_n(
        0x80u8,
        result.div_ceil(0x10000) as usize,
    ));
    let mut pack = b"PACK".to_vec();
    pack.extend(2u32.to_be_bytes());
    pack.extend(2u32.to_be_bytes());
    let base_at = pack.len();
    pack.extend(entry(3, base.len() as u64));
    pack.extend(zlib(&base));
    let delta_at = pack.len();
    pack.extend(entry(6, delta.len() as u64));
    pack.extend(ofs_delta_offset((delta_at - base_at) as u64));
    pack.extend(zlib(&delta));
    pack.extend([0u8; 20]);
    pack
}
