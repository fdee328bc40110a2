//! Frames of libp2p's own protocols written by hand, for floods a well-behaved libp2p peer
//! never sends: a gossipsub RPC subscribing to thousands of topics, IHAVEs of made-up
//! message ids. Protobuf by hand because two message shapes do not earn a code generator.

use guts_protocol::NetworkName;
use libp2p::StreamProtocol;

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited protobuf field.
fn bytes_field(tag: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(tag << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// `body` behind its unsigned-varint length, as libp2p's protobuf codecs frame messages.
fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 10);
    varint(body.len() as u64, &mut out);
    out.extend(body);
    out
}

/// The gossipsub protocol (v1.1) of `network`.
pub fn gossipsub_protocol(network: &NetworkName) -> StreamProtocol {
    StreamProtocol::try_from_owned(format!("{}/1.1.0", network.gossipsub_protocol_prefix()))
        .expect("a valid protocol name")
}

/// One gossipsub RPC subscribing to every topic in `topics`.
pub fn subscribe_rpc<'a>(topics: impl IntoIterator<Item = &'a str>) -> Vec<u8> {
    let mut rpc = Vec::new();
    for topic in topics {
        let mut sub = vec![0x08, 0x01]; // subscribe = true
        bytes_field(2, topic.as_bytes(), &mut sub);
        bytes_field(1, &sub, &mut rpc);
    }
    framed(rpc)
}

/// One gossipsub RPC whose control part announces (IHAVE) `ids` on `topic`.
pub fn ihave_rpc(topic: &str, ids: &[Vec<u8>]) -> Vec<u8> {
    let mut ihave = Vec::new();
    bytes_field(1, topic.as_bytes(), &mut ihave);
    for id in ids {
        bytes_field(2, id, &mut ihave);
    }
    let mut control = Vec::new();
    bytes_field(1, &ihave, &mut control);
    let mut rpc = Vec::new();
    bytes_field(3, &control, &mut rpc);
    framed(rpc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_length_prefixed_protobuf() {
        // RPC { subscriptions: [SubOpts { subscribe: true, topic_id: "t" }] }
        assert_eq!(
            subscribe_rpc(["t"]),
            vec![7, 0x0a, 5, 0x08, 1, 0x12, 1, b't']
        );
        let mut long = Vec::new();
        varint(300, &mut long);
        assert_eq!(long, vec![0xac, 0x02]);
    }
}
