//! The connection gate of both planes: with a cluster key, every TCP connection starts with
//! libp2p's private-network handshake (pnet: each side sends a 24-byte nonce, then everything is
//! XSalsa20-encrypted with the pre-shared key), followed by an explicit key check (each side
//! sends a known 16-byte value through the cipher and compares what it reads), so a wrong key is
//! refused as "wrong cluster key" on both sides instead of surfacing as a garbled negotiation.
//! Noise and yamux then run inside, as without a key.
//!
//! Without a key the wire is plain libp2p (tcp + noise + yamux), as before keys existed. Each side
//! also looks at the first bytes it reads: a keyless libp2p peer starts with the multistream-select
//! header, a keyed one with a random nonce. So a keyed side refuses a keyless peer, and a keyless
//! side a keyed one, by name and at once, instead of waiting for a negotiation that cannot
//! succeed.
//!
//! Refusals are reported to the event loop, which logs them (once a minute per address).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::Either;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::ConnectedPoint;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade::Version;
use libp2p::pnet::{PnetConfig, PnetError, PnetOutput};
use libp2p::{Multiaddr, PeerId, identity::Keypair, noise, tcp, yamux};
use tokio::sync::mpsc;

use crate::MeshError;
use crate::key::ClusterKey;

/// What each side sends through the cipher right after the pnet handshake.
const CHECK: &[u8; 16] = b"rafka/key-check\n";
/// The multistream-select header a keyless libp2p peer sends first.
const MULTISTREAM_HEADER: &[u8] = b"\x13/multistream/1.0.0\n";
/// How long a connection may take from TCP connect to a usable (authenticated, multiplexed)
/// connection; a peer that stalls the handshake is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Refusals waiting for the event loop to log them; more are dropped.
const REFUSAL_QUEUE: usize = 64;

/// Why a connection was refused at the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// Both sides have a key, and the keys differ.
    WrongKey,
    /// This side has a key; the peer speaks plain libp2p (no key).
    PeerHasNoKey,
    /// This side has no key; the peer does not speak plain libp2p (it has a key).
    PeerNeedsKey,
    /// The peer closed the connection during the key handshake: it has no key (or another one).
    PeerClosed,
    /// This side has no key; the peer closed the connection before sending anything (a keyed peer
    /// does that on a keyless peer's first bytes).
    PeerClosedUnanswered,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::WrongKey => "wrong cluster key: the peer's cluster key differs from this one",
            Self::PeerHasNoKey => {
                "the peer has no cluster key (give every node and client the same --cluster-key-file)"
            }
            Self::PeerNeedsKey => {
                "the peer requires a cluster key (give this process --cluster-key-file FILE or RAFKA_CLUSTER_KEY_FILE)"
            }
            Self::PeerClosed => {
                "the peer closed the connection during the cluster-key handshake (it has no cluster key, or another one)"
            }
            Self::PeerClosedUnanswered => {
                "the peer closed the connection without answering (it may require a cluster key: give --cluster-key-file FILE or RAFKA_CLUSTER_KEY_FILE)"
            }
        })
    }
}

impl std::error::Error for Refused {}

/// A connection refused at the gate, for the event loop to log.
#[derive(Clone, Debug)]
pub(crate) struct Refusal {
    /// The remote address.
    pub(crate) addr: Multiaddr,
    /// The peer dialled us.
    pub(crate) inbound: bool,
    /// Why.
    pub(crate) reason: Refused,
}

/// Where refusals go: a bounded queue (a flood of bad connections must not grow memory).
pub(crate) fn refusal_queue() -> (mpsc::Sender<Refusal>, mpsc::Receiver<Refusal>) {
    mpsc::channel(REFUSAL_QUEUE)
}

/// The TCP transport of one plane: the gate (with a key), noise, yamux, one handshake deadline.
pub(crate) fn transport(
    keypair: &Keypair,
    key: Option<ClusterKey>,
    refusals: mpsc::Sender<Refusal>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, MeshError> {
    let noise = noise::Config::new(keypair).map_err(|e| MeshError::Build(format!("noise: {e}")))?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    Ok(tcp
        .and_then(move |socket, endpoint: ConnectedPoint| {
            let report = Reporter {
                refusals: refusals.clone(),
                addr: endpoint.get_remote_address().clone(),
                inbound: endpoint.is_listener(),
            };
            async move {
                // Without a key the refusal shows later, in the first reads: the sniffer reports it.
                let Some(key) = key else {
                    return Ok(Either::Right(Sniff::new(
                        socket,
                        Expect::Header,
                        Some(report),
                    )));
                };
                keyed(socket, key).await.map(Either::Left).inspect_err(|e| {
                    if let Some(reason) = refused(e) {
                        report.send(reason);
                    }
                })
            }
        })
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(HANDSHAKE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

/// The reason inside an error of the gate, if it is a refusal.
pub fn refused(error: &io::Error) -> Option<Refused> {
    error.get_ref()?.downcast_ref::<Refused>().copied()
}

fn refusal(reason: Refused) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, reason)
}

/// Where one connection's refusal is reported.
pub(crate) struct Reporter {
    refusals: mpsc::Sender<Refusal>,
    addr: Multiaddr,
    inbound: bool,
}

impl Reporter {
    fn send(&self, reason: Refused) {
        let _ = self.refusals.try_send(Refusal {
            addr: self.addr.clone(),
            inbound: self.inbound,
            reason,
        });
    }
}

/// The pnet handshake and the key check on `socket`.
async fn keyed<S>(socket: S, key: ClusterKey) -> io::Result<PnetOutput<Sniff<S>>>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let mut socket = PnetConfig::new(key.psk())
        .handshake(Sniff::new(socket, Expect::NoHeader, None))
        .await
        .map_err(|e| match e {
            PnetError::HandshakeError(e) | PnetError::IoError(e) => closed_to_refusal(e),
        })?;
    socket.write_all(CHECK).await.map_err(closed_to_refusal)?;
    socket.flush().await.map_err(closed_to_refusal)?;
    let mut theirs = [0u8; CHECK.len()];
    socket
        .read_exact(&mut theirs)
        .await
        .map_err(closed_to_refusal)?;
    if &theirs != CHECK {
        return Err(refusal(Refused::WrongKey));
    }
    Ok(socket)
}

/// Errors that mean the peer closed the connection.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe
    )
}

/// An end of stream during the key handshake is the peer refusing us.
fn closed_to_refusal(e: io::Error) -> io::Error {
    if is_closed(&e) {
        refusal(Refused::PeerClosed)
    } else {
        e
    }
}

/// What the first bytes read from the peer must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Expect {
    /// The multistream-select header: the peer has no key, as this side.
    Header,
    /// Anything else (a pnet nonce): the peer has a key, as this side. A random nonce starts with
    /// the 20 bytes of the header with probability 2^-160.
    NoHeader,
}

/// A socket that checks the first bytes the peer sends against [`Expect`] and fails the read
/// that decides with the refusal (reported, if it has a reporter), so a peer of the other kind
/// is refused at once.
pub(crate) struct Sniff<S> {
    inner: S,
    expect: Expect,
    /// Bytes of the header compared so far, while they all matched; `None` once decided.
    matched: Option<usize>,
    report: Option<Reporter>,
}

impl<S> Sniff<S> {
    fn new(inner: S, expect: Expect, report: Option<Reporter>) -> Self {
        Self {
            inner,
            expect,
            matched: Some(0),
            report,
        }
    }

    /// A read or write that found the stream closed (`closed`) before the peer sent a byte: a
    /// keyless side takes it for a keyed peer refusing it.
    fn unanswered(&mut self, closed: bool) -> Option<Refused> {
        (closed && self.expect == Expect::Header && self.matched == Some(0)).then(|| {
            self.matched = None;
            Refused::PeerClosedUnanswered
        })
    }

    /// Looks at the next bytes read; the refusal if they decide against the peer.
    fn check(&mut self, read: &[u8]) -> Option<Refused> {
        let done = self.matched?;
        let expected = MULTISTREAM_HEADER.get(done..).unwrap_or_default();
        let n = expected.len().min(read.len());
        let header = if read.get(..n) != expected.get(..n) {
            false
        } else if done + n == MULTISTREAM_HEADER.len() {
            true
        } else {
            self.matched = Some(done + n);
            return None;
        };
        self.matched = None;
        match (self.expect, header) {
            (Expect::Header, false) => Some(Refused::PeerNeedsKey),
            (Expect::NoHeader, true) => Some(Refused::PeerHasNoKey),
            _ => None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniff<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Poll::Ready(result) = Pin::new(&mut this.inner).poll_read(cx, buf) else {
            return Poll::Pending;
        };
        let refused = match &result {
            Ok(n) if *n > 0 => this.check(buf.get(..*n).unwrap_or_default()),
            Ok(_) => this.unanswered(true),
            Err(e) => this.unanswered(is_closed(e)),
        };
        match refused {
            Some(reason) => {
                if let Some(report) = &this.report {
                    report.send(reason);
                }
                Poll::Ready(Err(refusal(reason)))
            }
            None => Poll::Ready(result),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniff<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.refuse_closed(result)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.refuse_closed(result)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

impl<S> Sniff<S> {
    /// A write that failed because the peer closed before it sent a byte: the refusal instead.
    fn refuse_closed<T>(&mut self, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        let Poll::Ready(Err(e)) = result else {
            return result;
        };
        match self.unanswered(is_closed(&e)) {
            Some(reason) => {
                if let Some(report) = &self.report {
                    report.send(reason);
                }
                Poll::Ready(Err(refusal(reason)))
            }
            None => Poll::Ready(Err(e)),
        }
    }
}
