//! How messages go on the wire: CBOR, one message per request-response stream, each direction
//! capped in size. Like libp2p's own CBOR codec, but a message past its cap is refused as too
//! large (rather than read short and reported as a truncated one), and an inbound request that
//! cannot be decoded reaches the driver as [`Frame::Invalid`] with the peer that sent it (libp2p
//! reports a failed read of a request with no peer attached), so that garbage counts toward a
//! ban. [`decode`] is what every inbound byte goes through; the fuzz targets in `fuzz/` call it.

use std::io;
use std::marker::PhantomData;

use futures::prelude::*;
use libp2p::StreamProtocol;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// More bytes than the protocol allows.
    #[error("message is larger than the {max} bytes this protocol allows")]
    TooLarge {
        /// The cap.
        max: u64,
    },
    /// Bytes that are not a message of the expected type.
    #[error("message could not be decoded: {0}")]
    Malformed(String),
}

impl WireError {
    /// The wire error inside `e`, if `e` came from this codec's decoding (not from the stream).
    pub fn of(e: &io::Error) -> Option<&WireError> {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<WireError>())
    }
}

/// A request as read off the wire: a message, or why the bytes were not one. Sent requests are
/// always [`Frame::Valid`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<T> {
    /// A well-formed request.
    Valid(T),
    /// Bytes that were not one; the driver charges the sender.
    Invalid(WireError),
}

/// Decodes one message of type `T` from `bytes`, at most `max` long.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: u64) -> Result<T, WireError> {
    if bytes.len() as u64 > max {
        return Err(WireError::TooLarge { max });
    }
    cbor4ii::serde::from_slice(bytes).map_err(|e| WireError::Malformed(e.to_string()))
}

/// Encodes one message.
pub fn encode<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    cbor4ii::serde::to_vec(Vec::new(), message).map_err(io::Error::other)
}

/// Reads one whole message, at most `max` bytes, and decodes it.
async fn read<T, R>(io: &mut R, max: u64) -> io::Result<T>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + Send,
{
    let mut bytes = Vec::new();
    // One byte more than allowed tells an oversized message from one of exactly `max`.
    io.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .await?;
    decode(&bytes, max).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A request-response codec for `Req` and `Resp` in CBOR with size caps each way.
pub struct Codec<Req, Resp> {
    max_request: u64,
    max_response: u64,
    types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Codec<Req, Resp> {
    /// A codec that refuses requests over `max_request` bytes and responses over `max_response`.
    pub fn new(max_request: u64, max_response: u64) -> Self {
        Self {
            max_request,
            max_response,
            types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for Codec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.max_request, self.max_response)
    }
}

impl<Req, Resp> libp2p::request_response::Codec for Codec<Req, Resp>
where
    Req: Send + Serialize + DeserializeOwned,
    Resp: Send + Serialize + DeserializeOwned,
{
    type Protocol = StreamProtocol;
    type Request = Frame<Req>;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame<Req>>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read(io, self.max_request).await {
            Ok(request) => Ok(Frame::Valid(request)),
            Err(e) => match WireError::of(&e) {
                Some(wire) => Ok(Frame::Invalid(wire.clone())),
                None => Err(e),
            },
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read(io, self.max_response).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame<Req>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match req {
            Frame::Valid(req) => io.write_all(&encode(&req)?).await,
            Frame::Invalid(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
        }
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&resp)?).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_dht::{Request, RequestBody};

    #[test]
    fn round_trips_and_refuses_garbage_and_excess() {
        let request = Request::new(RequestBody::Ping);
        let bytes = encode(&request).unwrap();
        let back: Request = decode(&bytes, 64).unwrap();
        assert_eq!(back, request);
        assert!(matches!(
            decode::<Request>(&[0xff, 0x00, 0x13], 64),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(
            decode::<Request>(&bytes, bytes.len() as u64 - 1),
            Err(WireError::TooLarge {
                max: bytes.len() as u64 - 1
            })
        );
    }

    #[tokio::test]
    async fn a_request_past_the_cap_or_of_garbage_is_read_as_invalid() {
        use libp2p::request_response::Codec as _;
        let mut codec: Codec<Request, Request> = Codec::new(16, 16);
        let p = StreamProtocol::new("/t");
        let big = vec![0u8; 1000];
        let read = codec.read_request(&p, &mut big.as_slice()).await.unwrap();
        assert_eq!(read, Frame::Invalid(WireError::TooLarge { max: 16 }));
        let read = codec
            .read_request(&p, &mut [0xffu8, 1].as_slice())
            .await
            .unwrap();
        assert!(matches!(read, Frame::Invalid(WireError::Malformed(_))));
        // A response past the cap is an error of the stream's reader.
        let e = codec
            .read_response(&p, &mut big.as_slice())
            .await
            .unwrap_err();
        assert_eq!(WireError::of(&e), Some(&WireError::TooLarge { max: 16 }));
    }
}
