//! Kafka frames read off a TCP connection: a 4-byte big-endian size, then that many bytes. A frame
//! over the size limit ends the stream with [`FrameError::TooLarge`] before anything is allocated
//! for it; every other frame is admitted by the node's [`RequestBudget`] (on its size and first
//! bytes) before its body is read, and comes with its [`Reservation`].

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

use super::budget::{RequestBudget, Reservation};

/// How many leading bytes of a frame the budget sees (api key, version, correlation id).
const HEAD: usize = rafka_mesh::kafka_codec::ADMISSION_HEAD;

/// Why a connection's frames ended other than by the client closing it between frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A frame declared larger than `--max-request-bytes`.
    #[error("a request of {len} bytes exceeds --max-request-bytes ({max})")]
    TooLarge {
        /// The declared size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Reading failed, or the connection closed inside a frame.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The frames of `read`, each admitted by `budget`; ends after the first error.
pub fn frames<R>(
    read: R,
    max_frame_bytes: usize,
    budget: RequestBudget,
) -> impl Stream<Item = Result<(Bytes, Reservation), FrameError>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let reader = Some(BufReader::with_capacity(64 * 1024, read));
    futures::stream::unfold(reader, move |reader| {
        let budget = budget.clone();
        async move {
            let mut reader = reader?;
            match next_frame(&mut reader, max_frame_bytes, &budget).await {
                Ok(Some(frame)) => Some((Ok(frame), Some(reader))),
                Ok(None) => None,
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}

/// The next frame; `None` when the client closed the connection between frames.
async fn next_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
    budget: &RequestBudget,
) -> Result<Option<(Bytes, Reservation)>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            max: max_frame_bytes,
        });
    }
    let mut head = [0u8; HEAD];
    let head_len = len.min(HEAD);
    let head = head.get_mut(..head_len).unwrap_or_default();
    reader.read_exact(head).await?;
    let reservation = budget.admit(len, head).await;
    let mut frame = BytesMut::zeroed(len);
    if let Some((start, rest)) = frame.split_at_mut_checked(head_len) {
        start.copy_from_slice(head);
        reader.read_exact(rest).await?;
    }
    Ok(Some((frame.freeze(), reservation)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(body);
        wire
    }

    #[tokio::test]
    async fn frames_come_whole_with_their_reservation_and_end_at_a_clean_close() {
        let budget = RequestBudget::new(1 << 20);
        let mut wire = framed(b"first frame");
        wire.extend(framed(b"2nd"));
        let frames: Vec<_> = frames(std::io::Cursor::new(wire), 1024, budget.clone())
            .collect()
            .await;
        assert_eq!(frames.len(), 2);
        let bodies: Vec<Bytes> = frames.into_iter().map(|f| f.unwrap().0).collect();
        assert_eq!(bodies, [&b"first frame"[..], &b"2nd"[..]]);
        assert_eq!(budget.small_in_use(), 0, "reservations given back");
    }

    #[tokio::test]
    async fn an_oversized_frame_ends_the_stream_before_anything_is_read_for_it() {
        let budget = RequestBudget::new(1 << 20);
        let mut wire = framed(b"ok");
        wire.extend_from_slice(&(1025u32).to_be_bytes());
        let mut frames = Box::pin(frames(std::io::Cursor::new(wire), 1024, budget));
        assert!(frames.next().await.unwrap().is_ok());
        let err = frames.next().await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    len: 1025,
                    max: 1024
                }
            ),
            "{err}"
        );
        assert!(frames.next().await.is_none());
    }

    #[tokio::test]
    async fn a_large_frame_is_not_read_until_the_budget_has_room() {
        let budget = RequestBudget::new(100 * 1024);
        let held = budget.admit(100 * 1024, &[0, 0]).await;
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let body = vec![7u8; 80 * 1024];
        client.write_all(&framed(&body)).await.unwrap();
        let mut frames = Box::pin(frames(server, 1 << 20, budget.clone()));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(100), frames.next());
        assert!(waiting.await.is_err(), "read while the budget was spent");
        drop(held);
        let (frame, reservation) = frames.next().await.unwrap().unwrap();
        assert_eq!(frame.len(), body.len());
        assert_eq!(budget.large_in_use(), 80 * 1024);
        drop(reservation);
        assert_eq!(budget.large_in_use(), 0);
    }
}
