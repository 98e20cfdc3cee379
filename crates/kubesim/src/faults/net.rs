//! The connection side of fault injection: a listener that closes new connections at once
//! while the server refuses connections, and a stream wrapper that fails established
//! connections on their next read or write meanwhile.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::Faults;

/// A listener that closes connections at once while refusing.
pub(crate) struct FaultListener {
    pub inner: TcpListener,
    pub faults: Arc<Faults>,
}

impl axum::serve::Listener for FaultListener {
    type Io = FaultStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) if self.faults.refusing() => {
                    // Dropping closes at once: the client sees its connection reset or
                    // closed before any answer, as from a server that is going away.
                    tracing::debug!(%addr, "refusing connection");
                    drop(stream);
                }
                Ok((stream, addr)) => {
                    let faults = self.faults.clone();
                    return (FaultStream { stream, faults }, addr);
                }
                Err(e) => {
                    // As axum's own listener: out of descriptors and the like pass.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection that fails its next read or write while the server refuses connections.
pub(crate) struct FaultStream {
    stream: TcpStream,
    faults: Arc<Faults>,
}

fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionReset,
        "kubesim is refusing connections",
    )
}

impl AsyncRead for FaultStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.faults.refusing() {
            return Poll::Ready(Err(refused()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for FaultStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.faults.refusing() {
            return Poll::Ready(Err(refused()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.faults.refusing() {
            return Poll::Ready(Err(refused()));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
