//! Stream framing: one unidirectional stream carries a batch of messages.
//!
//! ```text
//! stream := TAG frame*            TAG = 0x67 ('g')
//! frame  := len:u32 (big endian) payload[len]
//! ```
//!
//! The reader checks each length against the limit before reading the
//! payload, so an oversized frame costs four bytes of reading. It never
//! allocates the length a header claims: the payload buffer grows with the
//! bytes that actually arrive (a frame that fits one QUIC chunk is handed
//! on without a copy), so a peer announcing 64 KiB and then stalling costs
//! what it sent, not what it claimed. A stream that does not start with the
//! tag, or ends inside a frame, is garbage.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// Keeps a gauge of bytes held in partial frames: adds what the buffer
/// holds now, gives it all back when dropped.
struct Held<'a> {
    gauge: &'a AtomicU64,
    held: u64,
}

impl Held<'_> {
    fn set(&mut self, now: usize) {
        let now = now as u64;
        if now > self.held {
            self.gauge.fetch_add(now - self.held, Ordering::Relaxed);
        } else {
            self.gauge.fetch_sub(self.held - now, Ordering::Relaxed);
        }
        self.held = now;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// Reads frames from `stream` until it finishes, handing each payload to
/// `deliver`. `buffered` counts the bytes held in frames still arriving.
pub(crate) async fn read_frames(
    stream: &mut RecvStream,
    max_frame_bytes: usize,
    buffered: &AtomicU64,
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
        deliver(read_payload(stream, len, buffered).await?);
    }
}

/// Reads one payload of `len` bytes, growing the buffer as chunks arrive.
async fn read_payload(
    stream: &mut RecvStream,
    len: usize,
    buffered: &AtomicU64,
) -> Result<Bytes, FrameError> {
    let mut payload: Vec<u8> = Vec::new();
    let mut held = Held {
        gauge: buffered,
        held: 0,
    };
    while payload.len() < len {
        match stream.read_chunk(len - payload.len(), true).await {
            Ok(Some(chunk)) if payload.is_empty() && chunk.bytes.len() == len => {
                return Ok(chunk.bytes);
            }
            Ok(Some(chunk)) => {
                payload.extend_from_slice(&chunk.bytes);
                held.set(payload.capacity());
            }
            Ok(None) => return Err(FrameError::Garbage("truncated frame")),
            Err(e) => return Err(FrameError::Read(e)),
        }
    }
    Ok(Bytes::from(payload))
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
