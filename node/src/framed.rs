//! Framing of a file streamed by the HTTP API to the command line (`GET /api/v0/get/<id>?framed=true`).
//!
//! Once a response's headers are sent, plain HTTP has no way to say why the body stopped: a
//! chunk that no peer serves halfway through a get reached the command line as "end of file
//! before message length reached". Framed, the body is a sequence of frames, each a tag byte, a
//! 4-byte big-endian length and that many bytes: `d` data, `e` the daemon's error message (the
//! last frame of a failed get), `z` the end (the last frame of a complete one). A body that stops
//! without either was cut, and the client says so.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};

/// The Content-Type of a framed body.
pub const CONTENT_TYPE: &str = "application/x-cairn-frames";

/// The largest frame a [`Decoder`] accepts: data frames carry at most a read buffer's worth.
pub const MAX_FRAME: usize = 4 << 20;

const DATA: u8 = b'd';
const ERROR: u8 = b'e';
const END: u8 = b'z';

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Bytes of the file.
    Data(Bytes),
    /// The get failed: the daemon's message.
    Error(String),
    /// The file is complete.
    End,
}

/// Why a framed body cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// An unknown tag or an oversized frame.
    #[error(
        "the daemon sent a malformed stream (frame tag {tag:#x}, length {len}); is it the same cairn version?"
    )]
    Malformed {
        /// The tag byte.
        tag: u8,
        /// The declared length.
        len: usize,
    },
}

/// Frames a stream of file bytes: each item becomes a data frame, an error becomes the final
/// error frame, and the end of the stream the end frame.
pub fn encode<S>(stream: S) -> impl Stream<Item = std::io::Result<Bytes>> + Send
where
    S: Stream<Item = std::io::Result<Bytes>> + Send,
{
    let framed = stream.map(|item| match item {
        Ok(bytes) => (frame(DATA, &bytes), false),
        Err(e) => (frame(ERROR, e.to_string().as_bytes()), true),
    });
    // Stop after an error frame; add the end frame only after a stream that did not fail.
    futures::stream::unfold(
        (Box::pin(framed), false),
        |(mut framed, finished)| async move {
            if finished {
                return None;
            }
            match framed.next().await {
                Some((bytes, failed)) => Some((Ok(bytes), (framed, failed))),
                None => Some((Ok(frame(END, &[])), (framed, true))),
            }
        },
    )
}

fn frame(tag: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + payload.len());
    out.put_u8(tag);
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    out.freeze()
}

/// Decodes frames from a body that arrives in pieces, holding at most one frame.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: BytesMut,
}

impl Decoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes of the body.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let tag = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_FRAME || ![DATA, ERROR, END].contains(&tag) {
            return Err(FrameError::Malformed { tag, len });
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        self.buf.advance(5);
        let payload = self.buf.split_to(len).freeze();
        Ok(Some(match tag {
            DATA => Frame::Data(payload),
            ERROR => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
            _ => Frame::End,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(body: &[u8], piece: usize) -> Result<Vec<Frame>, FrameError> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for p in body.chunks(piece.max(1)) {
            d.push(p);
            while let Some(f) = d.next_frame()? {
                out.push(f);
            }
        }
        Ok(out)
    }

    async fn encoded(items: Vec<std::io::Result<Bytes>>) -> Vec<u8> {
        let frames: Vec<_> = encode(futures::stream::iter(items)).collect().await;
        frames
            .into_iter()
            .flat_map(|f| f.unwrap().to_vec())
            .collect()
    }

    #[tokio::test]
    async fn round_trips_in_any_pieces() {
        let body = encoded(vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::from_static(b"world")),
        ])
        .await;
        for piece in [1, 2, 5, 7, 1000] {
            assert_eq!(
                decode_all(&body, piece).unwrap(),
                vec![
                    Frame::Data(Bytes::from_static(b"hello ")),
                    Frame::Data(Bytes::from_static(b"world")),
                    Frame::End
                ],
                "pieces of {piece}"
            );
        }
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_without_an_end_frame() {
        let body = encoded(vec![
            Ok(Bytes::from_static(b"part")),
            Err(std::io::Error::other(
                "chunk abc is held by no reachable peer",
            )),
            Ok(Bytes::from_static(b"never sent")),
        ])
        .await;
        assert_eq!(
            decode_all(&body, 3).unwrap(),
            vec![
                Frame::Data(Bytes::from_static(b"part")),
                Frame::Error("chunk abc is held by no reachable peer".into())
            ]
        );
    }

    #[test]
    fn garbage_is_refused_not_buffered() {
        let mut d = Decoder::new();
        d.push(&[b'd', 0xff, 0xff, 0xff, 0xff]);
        assert!(d.next_frame().is_err(), "a 4 GiB frame is refused at once");
        let mut d = Decoder::new();
        d.push(b"HTTP/1.1 200");
        assert!(d.next_frame().is_err());
        let mut d = Decoder::new();
        d.push(&[b'd', 0, 0]);
        assert_eq!(d.next_frame(), Ok(None), "waits for a whole header");
    }
}
