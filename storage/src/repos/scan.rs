//! Reads a pack as it streams in, ahead of the indexer (git's index-pack), and refuses one
//! that would make the indexer allocate more than the limits allow.
//!
//! A pack entry's header gives its inflated size, but a delta's header gives only the
//! size of the delta: the size of the object it builds sits in the first bytes of the
//! inflated delta. A few hundred bytes of delta can ask for a 2 GiB object, which
//! the indexer allocates whole. Nothing in it bounds that, so this scanner inflates each
//! entry (output discarded, a 64 KiB scratch buffer) to read those sizes and to find where
//! the next entry starts. It costs one more inflate of the pack, no memory that grows
//! with it.

use flate2::{Decompress, FlushDecompress, Status};

use super::Limits;

/// Entry types in a pack.
const OBJ_OFS_DELTA: u8 = 6;
const OBJ_REF_DELTA: u8 = 7;
/// What the scanner inflates into (and forgets) at a time.
const SCRATCH: usize = 64 * 1024;
/// A delta's two leading size varints fit in this many bytes.
const DELTA_SIZES_MAX: usize = 20;
/// Objects may always inflate to this much, whatever the ratio to wire bytes.
const INFLATE_FLOOR: u64 = 1 << 30;

enum State {
    /// The 12-byte pack header.
    Header,
    /// An entry's type, size and base reference.
    Entry,
    /// An entry's zlib stream.
    Inflating(Inflating),
    /// The trailing checksum and anything after it (the indexer judges those).
    Trailer,
}

struct Inflating {
    zlib: Decompress,
    /// The inflated size its header declares.
    declared: u64,
    is_delta: bool,
    /// The first inflated bytes of a delta, until its sizes are read.
    delta_head: Vec<u8>,
}

/// Follows a pack through its entries; see the module docs.
pub(super) struct Scanner {
    limits: Limits,
    state: State,
    /// Bytes of a header or entry header not yet complete.
    pending: Vec<u8>,
    objects_left: u32,
    /// Objects the pack header announced.
    announced: u32,
    /// Inflated bytes the objects will take, summed.
    inflated: u64,
    /// Pack bytes seen so far.
    wire: u64,
    scratch: Vec<u8>,
}

impl Scanner {
    pub(super) fn new(limits: Limits) -> Scanner {
        Scanner {
            limits,
            state: State::Header,
            pending: Vec::new(),
            objects_left: 0,
            announced: 0,
            inflated: 0,
            wire: 0,
            scratch: vec![0; SCRATCH],
        }
    }

    /// Entries read whole so far.
    pub(super) fn objects_read(&self) -> usize {
        (self.announced - self.objects_left) as usize
    }

    /// Takes the next bytes of the pack; an error says which limit or rule they break.
    pub(super) fn feed(&mut self, mut input: &[u8]) -> Result<(), String> {
        self.wire += input.len() as u64;
        while !input.is_empty() {
            match &mut self.state {
                State::Header => {
                    let take = (12 - self.pending.len()).min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == 12 {
                        self.header()?;
                    }
                }
                State::Entry => {
                    self.pending.push(input[0]);
                    input = &input[1..];
                    self.entry()?;
                }
                State::Inflating(inflating) => {
                    let before_in = inflating.zlib.total_in();
                    let before_out = inflating.zlib.total_out();
                    let status = inflating
                        .zlib
                        .decompress(input, &mut self.scratch, FlushDecompress::None)
                        .map_err(|e| format!("an entry does not inflate: {e}"))?;
                    let consumed = (inflating.zlib.total_in() - before_in) as usize;
                    let produced = (inflating.zlib.total_out() - before_out) as usize;
                    input = &input[consumed..];
                    if inflating.zlib.total_out() > inflating.declared {
                        return Err(format!(
                            "an entry inflates past the {} bytes it declares",
                            inflating.declared
                        ));
                    }
                    let mut built = None;
                    if inflating.is_delta && inflating.delta_head.len() < DELTA_SIZES_MAX {
                        let room = DELTA_SIZES_MAX - inflating.delta_head.len();
                        let head = &self.scratch[..produced.min(room)];
                        inflating.delta_head.extend_from_slice(head);
                        built = delta_result_size(&inflating.delta_head)?;
                        if built.is_some() {
                            inflating.is_delta = false;
                        }
                    }
                    let sizes_unread = inflating.is_delta;
                    let ended = status == Status::StreamEnd;
                    // No progress with input left means the stream is broken.
                    if !ended && consumed == 0 && produced == 0 {
                        return Err("an entry's zlib stream is stuck".into());
                    }
                    if let Some(result) = built {
                        self.count(result, "the object a delta builds")?;
                    }
                    if ended {
                        if sizes_unread {
                            return Err("a delta too short to say its sizes".into());
                        }
                        self.objects_left -= 1;
                        self.state = if self.objects_left == 0 {
                            State::Trailer
                        } else {
                            State::Entry
                        };
                    }
                }
                State::Trailer => return Ok(()),
            }
        }
        Ok(())
    }

    fn header(&mut self) -> Result<(), String> {
        let h = std::mem::take(&mut self.pending);
        if &h[..4] != b"PACK" {
            return Err("no pack signature".into());
        }
        let version = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        if version != 2 && version != 3 {
            return Err(format!("pack version {version}"));
        }
        let count = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        if count > self.limits.max_pack_objects {
            return Err(format!(
                "it announces {count} objects, over the limit of {} (max_pack_objects)",
                self.limits.max_pack_objects
            ));
        }
        self.objects_left = count;
        self.announced = count;
        self.state = if count == 0 {
            State::Trailer
        } else {
            State::Entry
        };
        Ok(())
    }

    /// Parses the entry header in `pending` once it is complete.
    fn entry(&mut self) -> Result<(), String> {
        let p = &self.pending;
        let kind = (p[0] >> 4) & 7;
        let mut size = u64::from(p[0] & 0x0f);
        let mut at = 1;
        let mut shift = 4;
        let mut more = p[0] & 0x80 != 0;
        while more {
            let Some(&b) = p.get(at) else { return Ok(()) };
            if shift > 57 {
                return Err("an entry size too large to read".into());
            }
            size |= u64::from(b & 0x7f) << shift;
            shift += 7;
            at += 1;
            more = b & 0x80 != 0;
        }
        match kind {
            OBJ_OFS_DELTA => {
                // The base's offset: bytes until one without the high bit.
                let rest = &p[at..];
                if rest.len() > 10 {
                    return Err("a delta base offset too large to read".into());
                }
                if rest.last().is_none_or(|b| b & 0x80 != 0) {
                    return Ok(());
                }
            }
            OBJ_REF_DELTA => {
                if p.len() < at + 20 {
                    return Ok(());
                }
            }
            1..=4 => {}
            other => return Err(format!("an entry of unknown type {other}")),
        }
        let is_delta = kind == OBJ_OFS_DELTA || kind == OBJ_REF_DELTA;
        if is_delta {
            // The delta itself is held whole while it is applied.
            if size > self.limits.max_object_size {
                return Err(self.too_big("a delta", size));
            }
        } else {
            self.count(size, "an object")?;
        }
        self.pending.clear();
        self.state = State::Inflating(Inflating {
            zlib: Decompress::new(true),
            declared: size,
            is_delta,
            delta_head: Vec::new(),
        });
        Ok(())
    }

    /// Checks an object of `size` bytes against the limits and adds it to the total.
    fn count(&mut self, size: u64, what: &str) -> Result<(), String> {
        if size > self.limits.max_object_size {
            return Err(self.too_big(what, size));
        }
        self.inflated = self.inflated.saturating_add(size);
        let allowed = INFLATE_FLOOR.max(self.wire.saturating_mul(self.limits.max_inflation_ratio));
        if self.inflated > allowed {
            return Err(format!(
                "its objects inflate to {} bytes from {} on the wire, over {} times (max_inflation_ratio)",
                self.inflated, self.wire, self.limits.max_inflation_ratio
            ));
        }
        Ok(())
    }

    fn too_big(&self, what: &str, size: u64) -> String {
        format!(
            "{what}: {size} bytes, over the limit of {} (max_object_size)",
            self.limits.max_object_size
        )
    }
}

/// The size of the object a delta builds, once `head` (its first inflated bytes) holds
/// both of its leading varints (base size, then result size); `None` until then.
fn delta_result_size(head: &[u8]) -> Result<Option<u64>, String> {
    let mut values = [0u64; 2];
    let mut at = 0;
    for value in &mut values {
        let mut shift = 0;
        loop {
            let Some(&b) = head.get(at) else {
                return if head.len() >= DELTA_SIZES_MAX {
                    Err("a delta size too large to read".into())
                } else {
                    Ok(None)
                };
            };
            at += 1;
            if shift > 63 {
                return Err("a delta size too large to read".into());
            }
            *value |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    Ok(Some(values[1]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use guts_crafted::{delta_bomb as bomb, delta_varint as varint, entry_header, zlib};
    use std::io::Write;

    fn scan(pack: &[u8], limits: Limits, piece: usize) -> Result<(), String> {
        let mut scanner = Scanner::new(limits);
        for chunk in pack.chunks(piece) {
            scanner.feed(chunk)?;
        }
        Ok(())
    }

    #[test]
    fn a_delta_bomb_is_refused_from_its_first_bytes() {
        // 2 GiB from a few KiB.
        let pack = bomb(2 << 30);
        assert!(pack.len() < 256 * 1024, "{} bytes", pack.len());
        for piece in [1, 7, 4096, pack.len()] {
            let err = scan(&pack, Limits::default(), piece).unwrap_err();
            assert!(err.contains("max_object_size"), "{err}");
        }
    }

    #[test]
    fn honest_packs_pass_in_any_pieces() {
        let pack = bomb(1 << 20);
        for piece in [1, 3, 64, 65_536, pack.len()] {
            scan(&pack, Limits::default(), piece).unwrap();
        }
    }

    #[test]
    fn packs_git_itself_writes_pass() {
        // History with many similar versions of files, so git writes delta chains.
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str], input: Option<&[u8]>| {
            let mut cmd = std::process::Command::new("git");
            cmd.args(args)
                .current_dir(dir.path())
                .env("GIT_AUTHOR_NAME", "T")
                .env("GIT_AUTHOR_EMAIL", "t@example.com")
                .env("GIT_COMMITTER_NAME", "T")
                .env("GIT_COMMITTER_EMAIL", "t@example.com")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            if let Some(input) = input {
                child.stdin.take().unwrap().write_all(input).unwrap();
            }
            drop(child.stdin.take());
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "git {args:?}");
            out.stdout
        };
        git(&["init", "-q", "."], None);
        let mut text = String::new();
        for i in 0..60 {
            text.push_str(&format!("line {i}: {}\n", "x".repeat(i * 13 % 200)));
            std::fs::write(dir.path().join("file.txt"), &text).unwrap();
            git(&["add", "."], None);
            git(&["commit", "-q", "-m", &format!("c{i}")], None);
        }
        let pack = git(
            &["pack-objects", "--stdout", "--revs", "-q"],
            Some(b"HEAD\n"),
        );
        for piece in [1, 100, 65_536] {
            scan(&pack, Limits::default(), piece).unwrap();
        }
    }

    #[test]
    fn totals_and_declared_sizes_are_held_to() {
        // Objects just under the size limit, but far more of them than the wire bytes
        // can honestly make: refused once past the floor.
        let mut pack = b"PACK".to_vec();
        pack.extend(2u32.to_be_bytes());
        pack.extend(40u32.to_be_bytes());
        let one = bomb(500 << 20);
        let (base_and_delta, _) = one[12..].split_at(one.len() - 12 - 20);
        for _ in 0..20 {
            pack.extend(base_and_delta);
        }
        let err = scan(&pack, Limits::default(), 4096).unwrap_err();
        assert!(err.contains("max_inflation_ratio"), "{err}");

        // A blob whose stream inflates past what its header says.
        let mut pack = b"PACK".to_vec();
        pack.extend(2u32.to_be_bytes());
        pack.extend(1u32.to_be_bytes());
        pack.extend(entry_header(3, 10));
        pack.extend(zlib(&[0u8; 100_000]));
        let err = scan(&pack, Limits::default(), 4096).unwrap_err();
        assert!(err.contains("declares"), "{err}");
    }

    fn pack_header(version: u32, count: u32) -> Vec<u8> {
        let mut pack = b"PACK".to_vec();
        pack.extend(version.to_be_bytes());
        pack.extend(count.to_be_bytes());
        pack
    }

    fn limits(max_object_size: u64, max_pack_objects: u32, ratio: u64) -> Limits {
        Limits {
            max_object_size,
            max_pack_objects,
            max_inflation_ratio: ratio,
            ..Limits::default()
        }
    }

    #[test]
    fn the_pack_header_is_held_to_its_signature_version_and_count() {
        let l = limits(1 << 20, 5, 1000);
        for version in [2, 3] {
            scan(&pack_header(version, 5), l, 1).unwrap();
        }
        for version in [0, 1, 4] {
            let err = scan(&pack_header(version, 1), l, 12).unwrap_err();
            assert_eq!(err, format!("pack version {version}"));
        }
        let mut bad = pack_header(2, 1);
        bad[3] = b'X';
        assert_eq!(scan(&bad, l, 12).unwrap_err(), "no pack signature");
        let err = scan(&pack_header(2, 6), l, 12).unwrap_err();
        assert!(
            err.contains("6 objects") && err.contains("max_pack_objects"),
            "{err}"
        );
        // No objects: what follows is the trailer, not an entry.
        let mut empty = pack_header(2, 0);
        empty.extend([0xff; 20]);
        scan(&empty, l, 5).unwrap();
    }

    #[test]
    fn objects_and_deltas_are_held_to_the_size_limit_exactly() {
        let max = 1000;
        let l = limits(max, 10, 1000);
        for (kind, what, base) in [(3, "an object", 0), (OBJ_REF_DELTA, "a delta", 20)] {
            // The header (and a delta's base id): the size is judged before any data.
            let mut at_limit = pack_header(2, 1);
            at_limit.extend(entry_header(kind, max));
            at_limit.extend(vec![0u8; base]);
            scan(&at_limit, l, 1).unwrap();
            let mut over = pack_header(2, 1);
            over.extend(entry_header(kind, max + 1));
            over.extend(vec![0u8; base]);
            let err = scan(&over, l, 1).unwrap_err();
            assert!(err.starts_with(what) && err.contains("1001 bytes"), "{err}");
        }
        // The object a delta builds, from the delta's own first bytes.
        for (built, refused) in [(max, false), (max + 1, true)] {
            let mut delta = varint(10);
            delta.extend(varint(built));
            let mut pack = pack_header(2, 1);
            pack.extend(entry_header(OBJ_REF_DELTA, delta.len() as u64));
            pack.extend([1u8; 20]);
            pack.extend(zlib(&delta));
            let result = scan(&pack, l, 3);
            assert_eq!(result.is_err(), refused, "{built}: {result:?}");
        }
    }

    #[test]
    fn numbers_too_long_to_read_are_refused() {
        let l = Limits::default();
        // An entry size over 64 bits: continuation bytes past the last shift.
        let mut pack = pack_header(2, 1);
        pack.push(0xb0);
        pack.extend([0xff; 9]);
        pack.push(0);
        let err = scan(&pack, l, 1).unwrap_err();
        assert_eq!(err, "an entry size too large to read");
        // A last byte at bit 60 would carry bits past 64: refused, not read.
        let mut pack = pack_header(2, 1);
        pack.push(0xb0);
        pack.extend([0xff; 8]);
        pack.push(0x01);
        let err = scan(&pack, l, 1).unwrap_err();
        assert_eq!(err, "an entry size too large to read");
        // The longest size that still reads (57 bits) is judged by its value instead.
        let mut pack = pack_header(2, 1);
        pack.push(0xb0);
        pack.extend([0xff; 7]);
        pack.push(0x01);
        let err = scan(&pack, l, 1).unwrap_err();
        assert!(err.contains("max_object_size"), "{err}");
        // A base offset of more than ten bytes (eleven, and twelve), and one of ten.
        for long in [10, 11] {
            let mut pack = pack_header(2, 1);
            pack.extend(entry_header(OBJ_OFS_DELTA, 5));
            pack.extend(vec![0x80; long]);
            pack.push(0);
            let err = scan(&pack, l, 1).unwrap_err();
            assert_eq!(err, "a delta base offset too large to read");
        }
        let mut pack = pack_header(2, 1);
        pack.extend(entry_header(OBJ_OFS_DELTA, 5));
        pack.extend([0x80; 9]);
        pack.push(0);
        pack.extend(zlib(&[5, 5, 0x90, 1, 0]));
        scan(&pack, l, 1).unwrap();
        // A delta whose size varints run past the bytes they may take.
        let delta = [0x80u8; 30];
        let mut pack = pack_header(2, 1);
        pack.extend(entry_header(OBJ_REF_DELTA, delta.len() as u64));
        pack.extend([1u8; 20]);
        pack.extend(zlib(&delta));
        let err = scan(&pack, l, 1).unwrap_err();
        assert_eq!(err, "a delta size too large to read");
        // A delta that ends before it says its sizes.
        let mut pack = pack_header(2, 1);
        pack.extend(entry_header(OBJ_REF_DELTA, 1));
        pack.extend([1u8; 20]);
        pack.extend(zlib(&[0x80]));
        let err = scan(&pack, l, 64).unwrap_err();
        assert_eq!(err, "a delta too short to say its sizes");
        // Types 0 and 5 do not exist.
        for kind in [0, 5] {
            let mut pack = pack_header(2, 1);
            pack.extend(entry_header(kind, 1));
            let err = scan(&pack, l, 1).unwrap_err();
            assert_eq!(err, format!("an entry of unknown type {kind}"));
        }
    }

    #[test]
    fn the_inflation_allowance_grows_with_the_wire_bytes() {
        // 2 MiB of incompressible blob first: then the allowance is its wire bytes times
        // the ratio, not the floor.
        let mut noise = Vec::with_capacity(2 << 20);
        let mut x: u32 = 1;
        while noise.len() < 2 << 20 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.extend(x.to_le_bytes());
        }
        let mut pack = pack_header(2, 2);
        pack.extend(entry_header(3, noise.len() as u64));
        pack.extend(zlib(&noise));
        let wire = pack.len() as u64;
        let l = limits(u64::MAX / 4, 10, 1000);
        let allowed = wire * 1000;
        assert!(allowed > INFLATE_FLOOR);
        // The second object's header alone (3 more wire bytes at most) is judged.
        for (size, refused) in [(allowed - (2 << 20) - 1, false), (allowed + 8000, true)] {
            let mut two = pack.clone();
            two.extend(entry_header(3, size));
            let mut scanner = Scanner::new(l);
            let mut result = Ok(());
            for chunk in two.chunks(65_536) {
                result = scanner.feed(chunk);
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(result.is_err(), refused, "{size}: {result:?}");
            if let Err(err) = result {
                assert!(err.contains("max_inflation_ratio"), "{err}");
            }
            assert_eq!(scanner.objects_read(), 1);
        }
        // Under the floor, no wire bytes are needed.
        let mut small = pack_header(2, 1);
        small.extend(entry_header(3, INFLATE_FLOOR));
        scan(&small, l, 1).unwrap();
        let mut over = pack_header(2, 1);
        over.extend(entry_header(3, INFLATE_FLOOR + 1));
        assert!(
            scan(&over, l, 1)
                .unwrap_err()
                .contains("max_inflation_ratio")
        );
    }

    #[test]
    fn a_large_compressible_object_read_at_once_is_not_stuck() {
        // 4 MiB of zeros inflate through the 64 KiB scratch many times per feed.
        let blob = vec![0u8; 4 << 20];
        let mut pack = pack_header(2, 1);
        pack.extend(entry_header(3, blob.len() as u64));
        pack.extend(zlib(&blob));
        pack.extend([0u8; 20]);
        let mut scanner = Scanner::new(Limits::default());
        scanner.feed(&pack).unwrap();
        assert_eq!(scanner.objects_read(), 1);
    }
}
