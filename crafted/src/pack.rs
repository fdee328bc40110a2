//! Pack bytes field by field (gitformat-pack(5)): entry headers, delta encodings, zlib
//! streams, the trailer; and a pack that inflates far past its size.

/// A pack entry's header: its type in bits 4-6 of the first byte, its inflated size in 4
/// bits then 7 per byte.
pub fn entry_header(kind: u8, mut size: u64) -> Vec<u8> {
    let mut out = vec![(kind << 4) | (size & 0x0f) as u8];
    size >>= 4;
    while size > 0 {
        *out.last_mut().expect("a byte") |= 0x80;
        out.push((size & 0x7f) as u8);
        size >>= 7;
    }
    out
}

/// `data` as a zlib stream of stored (uncompressed) blocks.
pub fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let mut blocks = data.chunks(65_535).peekable();
    if data.is_empty() {
        out.extend([1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        out.push(u8::from(blocks.peek().is_none()));
        let len = block.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    out.extend(((b << 16) | a).to_be_bytes());
    out
}

/// SHA-1, for a pack's trailer. Written out (FIPS 180-4) because git2 hashes objects, not
/// raw bytes, and the fuzz build takes no hashing crate the node does not.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend((data.len() as u64).wrapping_mul(8).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().expect("4 bytes"));
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (bytes, x) in out.chunks_exact_mut(4).zip(h) {
        bytes.copy_from_slice(&x.to_be_bytes());
    }
    out
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

/// `data` deflated (git's usual zlib stream).
pub fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("deflate");
    e.finish().expect("deflate")
}

/// A pack of two entries: a 64 KiB blob, and a delta on it that builds an object of
/// exactly `result` bytes by copying the blob again and again. A few KiB on the wire.
pub fn delta_bomb(result: u64) -> Vec<u8> {
    let base: Vec<u8> = (0..65_536u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut delta = delta_varint(base.len() as u64);
    delta.extend(delta_varint(result));
    let mut left = result;
    while left > 0 {
        // Copy from offset 0: 0x80 alone copies 0x10000 bytes, 0xb0 and two size bytes
        // fewer.
        let n = left.min(0x10000);
        if n == 0x10000 {
            delta.push(0x80);
        } else {
            delta.extend([0x80 | 0x10 | 0x20, (n & 0xff) as u8, (n >> 8) as u8]);
        }
        left -= n;
    }
    let mut pack = b"PACK".to_vec();
    pack.extend(2u32.to_be_bytes());
    pack.extend(2u32.to_be_bytes());
    let base_at = pack.len();
    pack.extend(entry_header(3, base.len() as u64));
    pack.extend(zlib(&base));
    let delta_at = pack.len();
    pack.extend(entry_header(6, delta.len() as u64));
    pack.extend(ofs_delta_offset((delta_at - base_at) as u64));
    pack.extend(zlib(&delta));
    pack.extend([0u8; 20]);
    pack
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: [u8; 20]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// FIPS 180 test vectors.
    #[test]
    fn the_pack_checksum_is_sha1() {
        assert_eq!(
            hex(sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }

    #[test]
    fn sizes_and_offsets_encode_as_git_reads_them() {
        assert_eq!(entry_header(3, 15), vec![0x3f]);
        assert_eq!(entry_header(3, 16), vec![0xb0, 0x01]);
        assert_eq!(delta_varint(300), vec![0xac, 0x02]);
        // Each continuation byte of an offset counts one more: 128 is 0x80 0x00.
        assert_eq!(ofs_delta_offset(127), vec![0x7f]);
        assert_eq!(ofs_delta_offset(128), vec![0x80, 0x00]);
    }

    /// A stored zlib stream inflates back to its data, adler32 and all.
    #[test]
    fn stored_zlib_inflates_back() {
        use std::io::Read;
        for data in [&b""[..], b"hello", &[7u8; 70_000]] {
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&zlib_stored(data)[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
    }
}
