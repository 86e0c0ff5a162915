//! A hostile peer for the attack tests: a libp2p swarm of its own that speaks cairn's protocols
//! (the node's own codecs, identify, ping) but answers as a liar does — forged records for the
//! names it is told to forge, "I hold it" for every chunk, garbage for every chunk's bytes — and
//! that can send anything: floods, raw garbage, oversized messages.

use std::collections::{HashMap, HashSet};
use std::io;
use std::time::Duration;

use cairn_dht::{Request, RequestBody, Response, ResponseBody, SignedRecord, Timestamp};
use cairn_node::protocol::{
    CHUNK_PROTOCOL, ChunkCodec, ChunkRequest, ChunkResponse, IDENTIFY_VERSION, KAD_PROTOCOL,
    KadCodec, MAX_CHUNK_MESSAGE, MAX_KAD_MESSAGE, PeerAddr,
};
use cairn_node::wire::Frame;
use futures::prelude::*;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, identify, identity, noise, ping, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

/// A request's outcome as the liar saw it: the answer, or why there was none.
pub(crate) type Outcome<T> = Result<T, String>;

/// Bytes sent as they are on the DHT protocol, and whatever came back.
#[derive(Clone, Default)]
pub(crate) struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut v = Vec::new();
        io.take(MAX_CHUNK_MESSAGE).read_to_end(&mut v).await?;
        Ok(v)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut v = Vec::new();
        io.take(MAX_CHUNK_MESSAGE).read_to_end(&mut v).await?;
        if v.is_empty() {
            // The stream closed with no answer.
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(v)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&r).await?;
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        r: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&r).await
    }
}

#[derive(NetworkBehaviour)]
struct LiarBehaviour {
    kad: request_response::Behaviour<KadCodec>,
    chunk: request_response::Behaviour<ChunkCodec>,
    raw: request_response::Behaviour<RawCodec>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

enum Command {
    Dial(Multiaddr, oneshot::Sender<Outcome<()>>),
    Kad(
        PeerId,
        Request,
        oneshot::Sender<Outcome<Response<PeerAddr>>>,
    ),
    Chunk(
        PeerId,
        ChunkRequest,
        oneshot::Sender<Outcome<ChunkResponse>>,
    ),
    Raw(PeerId, Vec<u8>, oneshot::Sender<Outcome<Vec<u8>>>),
    Forge([u8; 32]),
    Claims(bool),
}

/// A running liar; dropped, its task ends.
pub(crate) struct Liar {
    /// Its peer id.
    pub(crate) peer_id: PeerId,
    commands: mpsc::Sender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Liar {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Liar {
    /// Starts a liar on 127.0.0.1 with the identity `seed` gives.
    pub(crate) async fn spawn(seed: u8) -> anyhow::Result<Liar> {
        let key = identity::Keypair::ed25519_from_bytes([seed; 32])?;
        let peer_id = key.public().to_peer_id();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_quic()
            .with_behaviour(|key| LiarBehaviour {
                kad: request_response::Behaviour::with_codec(
                    KadCodec::new(MAX_KAD_MESSAGE, MAX_KAD_MESSAGE),
                    [(KAD_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(20))
                        .with_max_concurrent_streams(10_000),
                ),
                chunk: request_response::Behaviour::with_codec(
                    ChunkCodec::new(MAX_CHUNK_MESSAGE, MAX_CHUNK_MESSAGE),
                    [(CHUNK_PROTOCOL, ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(20))
                        .with_max_concurrent_streams(10_000),
                ),
                raw: request_response::Behaviour::with_codec(
                    RawCodec,
                    [(KAD_PROTOCOL, ProtocolSupport::Outbound)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(20)),
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_VERSION.into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        swarm.listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse()?)?;
        let (commands, rx) = mpsc::channel(1024);
        let task = tokio::spawn(run(swarm, rx));
        Ok(Liar {
            peer_id,
            commands,
            task,
        })
    }

    /// Forges records under this public key from now on.
    pub(crate) async fn forge(&self, public_key: [u8; 32]) {
        let _ = self.commands.send(Command::Forge(public_key)).await;
    }

    /// Whether it claims to hold every chunk (the default) or none.
    pub(crate) async fn claims(&self, claims: bool) {
        let _ = self.commands.send(Command::Claims(claims)).await;
    }

    /// Dials `addr`; `Ok` once a connection is up.
    pub(crate) async fn dial(&self, addr: Multiaddr) -> Outcome<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Dial(addr, tx)).await;
        rx.await.unwrap_or_else(|_| Err("liar stopped".into()))
    }

    /// Sends a DHT request to `peer`.
    pub(crate) async fn kad(&self, peer: PeerId, body: RequestBody) -> Outcome<Response<PeerAddr>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Kad(peer, Request::new(body), tx)).await;
        rx.await.unwrap_or_else(|_| Err("liar stopped".into()))
    }

    /// Sends a chunk request to `peer`.
    pub(crate) async fn chunk(
        &self,
        peer: PeerId,
        request: ChunkRequest,
    ) -> Outcome<ChunkResponse> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Chunk(peer, request, tx)).await;
        rx.await.unwrap_or_else(|_| Err("liar stopped".into()))
    }

    /// Sends `bytes` as they are on the DHT protocol to `peer`.
    pub(crate) async fn raw(&self, peer: PeerId, bytes: Vec<u8>) -> Outcome<Vec<u8>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Raw(peer, bytes, tx)).await;
        rx.await.unwrap_or_else(|_| Err("liar stopped".into()))
    }

    async fn send(&self, command: Command) {
        let _ = self.commands.send(command).await;
    }
}

/// A record under `public_key` that no secret signed: a higher sequence than any real one and
/// another value, with a signature of zeros.
pub(crate) fn forged_record(public_key: [u8; 32]) -> SignedRecord {
    SignedRecord {
        public_key,
        value: b"forged".to_vec(),
        sequence: u64::MAX / 2,
        expires: Timestamp::from_unix(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                + Duration::from_secs(3600),
        ),
        signature: [0; 64],
    }
}

async fn run(mut swarm: Swarm<LiarBehaviour>, mut commands: mpsc::Receiver<Command>) {
    let mut forge: HashSet<[u8; 32]> = HashSet::new();
    let mut claims = true;
    let mut dials: HashMap<PeerId, Vec<oneshot::Sender<Outcome<()>>>> = HashMap::new();
    let mut kad: HashMap<OutboundRequestId, oneshot::Sender<Outcome<Response<PeerAddr>>>> =
        HashMap::new();
    let mut chunk: HashMap<OutboundRequestId, oneshot::Sender<Outcome<ChunkResponse>>> =
        HashMap::new();
    let mut raw: HashMap<OutboundRequestId, oneshot::Sender<Outcome<Vec<u8>>>> = HashMap::new();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(Command::Forge(pk)) => { forge.insert(pk); }
                Some(Command::Claims(c)) => claims = c,
                Some(Command::Dial(addr, reply)) => {
                    let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() else {
                        let _ = reply.send(Err("address has no /p2p/ id".into()));
                        continue;
                    };
                    if swarm.is_connected(&peer) {
                        let _ = reply.send(Ok(()));
                    } else if let Err(e) = swarm.dial(addr) {
                        let _ = reply.send(Err(e.to_string()));
                    } else {
                        dials.entry(peer).or_default().push(reply);
                    }
                }
                Some(Command::Kad(peer, request, reply)) => {
                    kad.insert(swarm.behaviour_mut().kad.send_request(&peer, Frame::Valid(request)), reply);
                }
                Some(Command::Chunk(peer, request, reply)) => {
                    chunk.insert(swarm.behaviour_mut().chunk.send_request(&peer, Frame::Valid(request)), reply);
                }
                Some(Command::Raw(peer, bytes, reply)) => {
                    raw.insert(swarm.behaviour_mut().raw.send_request(&peer, bytes), reply);
                }
            },
            event = swarm.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    for reply in dials.remove(&peer_id).unwrap_or_default() {
                        let _ = reply.send(Ok(()));
                    }
                }
                SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                    for reply in dials.remove(&peer).unwrap_or_default() {
                        let _ = reply.send(Err(error.to_string()));
                    }
                }
                SwarmEvent::Behaviour(LiarBehaviourEvent::Kad(event)) => match event {
                    request_response::Event::Message { message, .. } => match message {
                        request_response::Message::Request { request: Frame::Invalid(_), .. } => {}
                        request_response::Message::Request { request: Frame::Valid(request), channel, .. } => {
                            let body = lie(&request.body, &forge, claims);
                            let _ = swarm.behaviour_mut().kad.send_response(channel, Response::new(body));
                        }
                        request_response::Message::Response { request_id, response } => {
                            if let Some(reply) = kad.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                    },
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = kad.remove(&request_id) {
                            let _ = reply.send(Err(error.to_string()));
                        }
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(LiarBehaviourEvent::Chunk(event)) => match event {
                    request_response::Event::Message { message, .. } => match message {
                        request_response::Message::Request { request: Frame::Invalid(_), .. } => {}
                        request_response::Message::Request { request: Frame::Valid(request), channel, .. } => {
                            let answer = match request {
                                // Garbage in place of every chunk.
                                ChunkRequest::Get { .. } => ChunkResponse::Data(vec![0xee; 4096]),
                                ChunkRequest::Store { .. } => ChunkResponse::Stored,
                                ChunkRequest::Keep { .. } | ChunkRequest::Prove { .. } => {
                                    ChunkResponse::NotFound
                                }
                            };
                            let _ = swarm.behaviour_mut().chunk.send_response(channel, answer);
                        }
                        request_response::Message::Response { request_id, response } => {
                            if let Some(reply) = chunk.remove(&request_id) {
                                let _ = reply.send(Ok(response));
                            }
                        }
                    },
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = chunk.remove(&request_id) {
                            let _ = reply.send(Err(error.to_string()));
                        }
                    }
                    _ => {}
                },
                SwarmEvent::Behaviour(LiarBehaviourEvent::Raw(event)) => match event {
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    } => {
                        if let Some(reply) = raw.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                    request_response::Event::OutboundFailure { request_id, error, .. } => {
                        if let Some(reply) = raw.remove(&request_id) {
                            let _ = reply.send(Err(error.to_string()));
                        }
                    }
                    _ => {}
                },
                _ => {}
            },
        }
    }
}

/// The liar's answer to a DHT request: it knows nobody, holds everything, and forges.
fn lie(body: &RequestBody, forge: &HashSet<[u8; 32]>, claims: bool) -> ResponseBody<PeerAddr> {
    match body {
        RequestBody::Ping => ResponseBody::Pong,
        RequestBody::FindNode { .. } => ResponseBody::Nodes { closer: Vec::new() },
        RequestBody::FindValue { key } => ResponseBody::Value {
            record: forge
                .iter()
                .find(|pk| cairn_dht::Key::for_record(pk) == *key)
                .map(|pk| forged_record(*pk)),
            closer: Vec::new(),
        },
        RequestBody::GetProviders { .. } => ResponseBody::Providers {
            holds: claims,
            providers: Vec::new(),
            closer: Vec::new(),
            chunk: None,
        },
        RequestBody::PutRecord { .. } | RequestBody::AddProvider { .. } => ResponseBody::Stored,
    }
}
