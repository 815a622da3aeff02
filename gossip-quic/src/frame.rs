//! Stream framing: one unidirectional stream carries a batch of messages.
//!
//! ```text
//! stream := TAG frame*            TAG = 0x67 ('g')
//! frame  := len:u32 (big endian) payload[len]
//! ```
//!
//! The reader checks each length against the limit before reading the
//! payload, so an oversized frame costs four bytes of reading. A stream
//! that does not start with the tag, or ends inside a frame, is garbage.

use bytes::Bytes;
use quinn::{ReadExactError, RecvStream};

/// First byte of every stream.
pub(crate) const STREAM_TAG: u8 = 0x67;

/// Bytes of a frame header.
pub(crate) const HEADER_BYTES: usize = 4;

/// Encodes a batch into one buffer: the stream tag, then the frames.
pub(crate) fn encode_batch(batch: &[Bytes]) -> Vec<u8> {
    let len = 1 + batch.iter().map(|b| HEADER_BYTES + b.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(len);
    buf.push(STREAM_TAG);
    for message in batch {
        // `send` refuses messages longer than `max_frame_bytes`, itself at most u32::MAX.
        let n = u32::try_from(message.len())
            .expect("frame length checked against max_frame_bytes in send");
        buf.extend_from_slice(&n.to_be_bytes());
        buf.extend_from_slice(message);
    }
    buf
}

/// Why a stream was not read to its end.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// Not our framing: the peer is broken or hostile.
    Garbage(&'static str),
    /// A frame announced more than the limit.
    Oversized(u64),
    /// The stream or connection failed under us (reset, closed): not the
    /// peer's fault as far as we can tell.
    Read(quinn::ReadError),
}

/// Reads frames from `stream` until it finishes, handing each payload to
/// `deliver`.
pub(crate) async fn read_frames(
    stream: &mut RecvStream,
    max_frame_bytes: usize,
    mut deliver: impl FnMut(Bytes),
) -> Result<(), FrameError> {
    let mut tag = [0u8; 1];
    match stream.read_exact(&mut tag).await {
        Ok(()) if tag[0] == STREAM_TAG => {}
        Ok(()) => return Err(FrameError::Garbage("bad stream tag")),
        Err(ReadExactError::FinishedEarly(_)) => return Err(FrameError::Garbage("empty stream")),
        Err(ReadExactError::ReadError(e)) => return Err(FrameError::Read(e)),
    }
    loop {
        let mut header = [0u8; HEADER_BYTES];
        match stream.read_exact(&mut header).await {
            Ok(()) => {}
            Err(ReadExactError::FinishedEarly(0)) => return Ok(()),
            Err(ReadExactError::FinishedEarly(_)) => {
                return Err(FrameError::Garbage("truncated frame header"));
            }
            Err(ReadExactError::ReadError(e)) => return Err(FrameError::Read(e)),
        }
        let len = u32::from_be_bytes(header) as usize;
        if len > max_frame_bytes {
            return Err(FrameError::Oversized(len as u64));
        }
        let mut payload = vec![0u8; len];
        match stream.read_exact(&mut payload).await {
            Ok(()) => deliver(Bytes::from(payload)),
            Err(ReadExactError::FinishedEarly(_)) => {
                return Err(FrameError::Garbage("truncated frame"));
            }
            Err(ReadExactError::ReadError(e)) => return Err(FrameError::Read(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_layout() {
        let buf = encode_batch(&[Bytes::from_static(b"ab"), Bytes::new()]);
        assert_eq!(buf, [STREAM_TAG, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0]);
    }
}
