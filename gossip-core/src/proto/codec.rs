//! Bytes ⇄ [`Envelope`]: one protocol-version byte, then postcard.
//!
//! Decoding checks the size before looking at a byte, then the version, then
//! decodes; it never panics on arbitrary input.

use bytes::Bytes;

use crate::proto::error::RefuseReason;
use crate::proto::message::Envelope;

/// The protocol version this build speaks. Bumped on any wire change.
pub const PROTOCOL_VERSION: u8 = 3;

/// Encodes an envelope. Infallible for our own types.
pub fn encode(envelope: &Envelope) -> Bytes {
    let mut buf = Vec::with_capacity(envelope.encoded_len());
    buf.push(PROTOCOL_VERSION);
    // Serializing plain structs, strings and byte buffers into a Vec cannot fail.
    let buf =
        postcard::to_extend(envelope, buf).expect("postcard encoding into a Vec is infallible");
    Bytes::from(buf)
}

/// Decodes an envelope, refusing oversized, foreign-version and malformed
/// input (trailing bytes included). The cluster is checked by the node.
pub fn decode(bytes: &[u8], max_message_bytes: usize) -> Result<Envelope, RefuseReason> {
    if bytes.len() > max_message_bytes {
        return Err(RefuseReason::Oversized);
    }
    let (&version, rest) = bytes.split_first().ok_or(RefuseReason::Malformed)?;
    if version != PROTOCOL_VERSION {
        return Err(RefuseReason::WrongVersion);
    }
    match postcard::take_from_bytes::<Envelope>(rest) {
        Ok((envelope, [])) => Ok(envelope),
        _ => Err(RefuseReason::Malformed),
    }
}

/// Hash of a cluster name (FNV-1a, stable across builds and platforms).
pub fn cluster_id(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
