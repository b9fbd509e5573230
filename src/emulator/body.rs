//! Request bodies: a cap per service, enforced before and while a body is read.
//!
//! The caps are the emulator's choice (OCI publishes no general request-size limit):
//! - Compute (`/20160918/…`): 1 MiB. A valid Compute request is far smaller: LaunchInstance's
//!   `metadata` and `extendedMetadata` may hold 32,000 bytes together (OCI's documented limit,
//!   base64 `user_data` included), and the other fields are ids, names, numbers and tags.
//! - Object Storage (`/n/…`): 64 MiB. OCI's PutObject takes up to 50 GiB, but the emulator keeps
//!   objects in memory and in its `--data` file, and kiln's state objects are a few MB at most.
//!
//! A body over the cap is 413 `RequestEntityTooLarge`. OCI's table of common API errors lists no
//! code for 413, so the code is the status's original name (`Request Entity Too Large`) in OCI's
//! CamelCase style. A declared
//! `Content-Length` over the cap is answered without reading any of the body; a body without one
//! (chunked) is read only up to the cap. Both happen only after the signature over the headers
//! verified ([`super::auth`]): an unauthenticated request is 401 before any of its body is read,
//! and a client that sends `Expect: 100-continue` gets its 401 or 413 before it sends the body.

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// The largest request body accepted, per service, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// The Compute API (`/20160918/…`).
    pub compute: usize,
    /// Object Storage (`/n/…`).
    pub object_storage: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            compute: 1024 * 1024,
            object_storage: 64 * 1024 * 1024,
        }
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Declared or found larger than the cap: answer 413.
    TooLarge { limit: usize },
    /// The connection failed while the body was read: there is no one to answer.
    Broken,
}

/// Read `body` whole, refusing a `declared` length over `limit` without reading anything, and
/// stopping as soon as more than `limit` bytes arrived.
pub async fn read_capped<B>(
    body: B,
    declared: Option<u64>,
    limit: usize,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge { limit })
        }
        Err(_) => Err(BodyError::Broken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn a_declared_length_over_the_cap_is_refused_before_reading() {
        // A body that fails if polled: refusing must not touch it.
        let never = StreamBody::new(futures::stream::poll_fn(
            |_| -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
                panic!("the body was read")
            },
        ));
        assert_eq!(
            read_capped(never, Some(11), 10).await,
            Err(BodyError::TooLarge { limit: 10 })
        );
    }

    #[tokio::test]
    async fn an_undeclared_body_is_read_up_to_the_cap_only() {
        let pulled = std::sync::atomic::AtomicUsize::new(0);
        let chunks = futures::stream::iter(0..1000).map(|_| {
            pulled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![b'x'; 7])))
        });
        assert_eq!(
            read_capped(StreamBody::new(chunks), None, 100).await,
            Err(BodyError::TooLarge { limit: 100 })
        );
        // 15 chunks of 7 bytes pass 100; nothing after the one that crossed the cap is pulled.
        assert_eq!(pulled.into_inner(), 15);
        let exact = Full::new(Bytes::from(vec![b'x'; 100]));
        assert_eq!(read_capped(exact, Some(100), 100).await.unwrap().len(), 100);
    }
}
