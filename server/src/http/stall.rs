//! A connection that fails once no byte has moved either way for a while (between `limit` and
//! twice that) while it waits on the client: a client that stops reading a response, or stops
//! sending a body, cannot hold its connection (and its place under the connection limits) for
//! ever. A download that keeps moving is never cut, however long it takes; an idle connection
//! between requests is closed sooner, by the header timeout.
//!
//! Progress only sets a flag (a timer reset on every read and write would cost the hot path);
//! the timer looks at the flag when it fires. And a poll that finds nothing to do polls the
//! timer only when it has fired or does not yet hold this task's waker: polling it every time
//! measured at 0.93 of the requests/s of the same build without this wrapper, for small
//! objects; this way, at 0.99 to 1.02 (BENCHMARKS.md).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::{Instant, Sleep};

#[derive(Debug)]
pub(super) struct StallLimit<T> {
    inner: T,
    limit: Duration,
    /// When to look whether anything moved.
    deadline: Pin<Box<Sleep>>,
    /// Whether a byte moved since the deadline was set.
    moved: bool,
    /// The waker the timer holds, once polled.
    armed_for: Option<Waker>,
}

impl<T> StallLimit<T> {
    pub(super) fn new(inner: T, limit: Duration) -> StallLimit<T> {
        StallLimit {
            inner,
            limit,
            deadline: Box::pin(tokio::time::sleep(limit)),
            moved: false,
            armed_for: None,
        }
    }

    /// The answer to a poll that found nothing to do: still waiting, or stalled.
    fn waiting<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        let armed = self
            .armed_for
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()));
        if armed && !self.deadline.is_elapsed() {
            // The timer will wake this task.
            return Poll::Pending;
        }
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                self.armed_for = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if !std::mem::take(&mut self.moved) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("nothing moved for {:?}", self.limit),
                )));
            }
            // Polled again at once, to wait on the new deadline.
            self.deadline.as_mut().reset(Instant::now() + self.limit);
        }
    }

    /// `result` of a poll of the inner connection: progress moves the deadline on.
    fn after<R>(
        &mut self,
        polled: Poll<io::Result<R>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(result) => {
                self.moved = true;
                Poll::Ready(result)
            }
            Poll::Pending => self.waiting(cx),
        }
    }
}

impl<T: Read + Unpin> Read for StallLimit<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.after(polled, cx)
    }
}

impl<T: Write + Unpin> Write for StallLimit<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.after(polled, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.after(polled, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.after(polled, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.after(polled, cx)
    }
}
