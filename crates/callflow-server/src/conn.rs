//! A connection's first bytes under a deadline: hyper's header read timeout starts only once hyper-util has told HTTP/1 from HTTP/2 by those bytes, so a connection that sent nothing was never closed (1,100 such sockets made `/health` unreachable).
//!
//! Past those bytes an HTTP/2 connection has no timeout of hyper's: one that sent its
//! preface and then nothing, or keeps a connection with no stream open, stayed for ever.
//! So each connection counts its requests in flight ([`Activity`], from the service's call
//! until the response body is dropped, so event streams count) and [`drive`] shuts it down
//! gracefully (GOAWAY for HTTP/2) once it has had none for [`IdleLimits`]' time.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Sleep;

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream whose reads fail with `TimedOut` if the bytes that tell HTTP/1 from HTTP/2 (a
/// byte that is not the HTTP/2 preface's, or the whole preface) have not arrived within
/// the deadline. After them it is the stream itself: HTTP/1 heads are timed by hyper.
pub struct FirstBytes<S> {
    inner: S,
    deadline: Option<Pin<Box<Sleep>>>,
    /// Bytes of the HTTP/2 preface matched so far.
    matched: usize,
}

impl<S> FirstBytes<S> {
    /// `inner`, which must send its first bytes within `limit` from now.
    pub fn new(inner: S, limit: Duration) -> FirstBytes<S> {
        FirstBytes { inner, deadline: Some(Box::pin(tokio::time::sleep(limit))), matched: 0 }
    }

    fn seen(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if H2_PREFACE.get(self.matched) != Some(&b) {
                self.deadline = None;
                return;
            }
            self.matched += 1;
        }
        if self.matched == H2_PREFACE.len() {
            self.deadline = None;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.deadline.is_some() {
                    this.seen(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this.deadline.as_mut().is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within the header timeout",
                    )));
                }
                Poll::Pending
            }
            error => error,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// What a connection has in flight, as its idle watchdog sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    in_flight: usize,
    /// Whether a request was ever made: until then the connection gets the header timeout.
    served: bool,
}

/// The count of a connection's requests in flight, shared by its service.
#[derive(Clone)]
pub struct Activity(Arc<watch::Sender<Load>>);

/// One request in flight; dropped with its response body (or its handler, if cut short).
pub struct Busy(Arc<watch::Sender<Load>>);

impl Activity {
    /// A connection with nothing in flight yet, and the receiver its watchdog waits on.
    pub fn new() -> (Activity, watch::Receiver<Load>) {
        let (tx, rx) = watch::channel(Load::default());
        (Activity(Arc::new(tx)), rx)
    }

    /// A request begins; it is in flight until the returned guard is dropped.
    pub fn begin(&self) -> Busy {
        self.0.send_modify(|load| {
            load.in_flight += 1;
            load.served = true;
        });
        Busy(self.0.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|load| load.in_flight -= 1);
    }
}

/// How long a connection may have no request in flight.
#[derive(Clone, Copy, Debug)]
pub struct IdleLimits {
    /// Before its first request (`server.header_timeout`).
    pub first: Duration,
    /// After a response (`server.idle_timeout`).
    pub between: Duration,
}

/// Completes once the connection has had nothing in flight for its limit; never if its
/// service is gone (the connection is ending anyway).
pub async fn idle(mut load: watch::Receiver<Load>, limits: IdleLimits) {
    loop {
        let now = *load.borrow_and_update();
        let changed = load.changed();
        let result = if now.in_flight > 0 {
            Ok(changed.await)
        } else {
            tokio::time::timeout(if now.served { limits.between } else { limits.first }, changed).await
        };
        match result {
            Err(_elapsed) => return,
            Ok(Ok(())) => {}
            Ok(Err(_closed)) => std::future::pending().await,
        }
    }
}

/// Serves `conn` until it ends; shuts it down with `close` (graceful: requests in flight
/// finish) when `idle` completes or `stop` turns true. An idle connection whose peer does
/// not let it close (an HTTP/2 client that never answers the GOAWAY's ping) is dropped
/// after `grace`.
pub async fn drive<C: Future>(
    mut conn: Pin<&mut C>,
    close: impl FnOnce(Pin<&mut C>),
    idle: impl Future<Output = ()>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    enum Why {
        Done,
        Idle,
        Stop,
    }
    let stopped = async {
        if stop.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let why = tokio::select! {
        _ = conn.as_mut() => Why::Done,
        _ = idle => Why::Idle,
        _ = stopped => Why::Stop,
    };
    match why {
        Why::Done => {}
        Why::Idle => {
            close(conn.as_mut());
            let _ = tokio::time::timeout(grace, conn).await;
        }
        Why::Stop => {
            close(conn.as_mut());
            conn.await;
        }
    }
}
