//! In-memory stdout/stderr for a guest, with a size cap.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// What a full pipe does with more output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// The write fails with a trap: the response would be incomplete, so the call ends.
    Trap,
    /// The excess is dropped: losing the tail of a log is better than failing the request.
    Truncate,
}

/// A buffer that guest output streams write into, shared with the host that reads it after
/// the call. Cloning shares the buffer.
#[derive(Debug, Clone)]
pub(crate) struct CappedPipe {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    buf: BytesMut,
    capacity: usize,
    overflow: Overflow,
    overflowed: bool,
}

impl CappedPipe {
    pub(crate) fn new(capacity: usize, overflow: Overflow) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                buf: BytesMut::new(),
                capacity,
                overflow,
                overflowed: false,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another writer panicked mid-append; the bytes are still
        // a valid prefix of the output.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `bytes`, applying the overflow policy. Returns `false` if the write must fail.
    pub(crate) fn append(&self, bytes: &[u8]) -> bool {
        let mut inner = self.lock();
        let room = inner.capacity - inner.buf.len();
        if bytes.len() <= room {
            inner.buf.extend_from_slice(bytes);
            return true;
        }
        inner.overflowed = true;
        match inner.overflow {
            Overflow::Trap => false,
            Overflow::Truncate => {
                inner.buf.extend_from_slice(&bytes[..room]);
                true
            }
        }
    }

    /// Whether output went beyond the cap.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Takes what was written so far.
    pub(crate) fn take(&self) -> Bytes {
        self.lock().buf.split().freeze()
    }

    /// Takes what was written so far and whether it went past the cap, and starts afresh
    /// (for an instance that serves another request).
    pub(crate) fn drain(&self) -> (Bytes, bool) {
        let mut inner = self.lock();
        let overflowed = std::mem::take(&mut inner.overflowed);
        (inner.buf.split().freeze(), overflowed)
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.append(&bytes) {
            Ok(())
        } else {
            Err(StreamError::trap("output limit exceeded"))
        }
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accept a write: `write` applies the cap, so a guest writing past it hits the
        // overflow policy rather than a stream that silently stops being ready.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(if self.append(buf) {
            Ok(buf.len())
        } else {
            Err(io::Error::other("output limit exceeded"))
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn trap_policy_refuses_the_write_that_crosses_the_cap() {
        let pipe = CappedPipe::new(4, Overflow::Trap);
        assert!(pipe.append(b"abc"));
        assert!(!pipe.append(b"de"));
        assert!(pipe.overflowed());
        assert_eq!(&pipe.take()[..], b"abc");
    }

    #[test]
    fn truncate_policy_keeps_the_prefix() {
        let pipe = CappedPipe::new(4, Overflow::Truncate);
        assert!(pipe.append(b"abc"));
        assert!(pipe.append(b"def"));
        assert!(pipe.overflowed());
        assert_eq!(&pipe.take()[..], b"abcd");
    }
}
