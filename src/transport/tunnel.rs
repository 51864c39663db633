//! The byte stream a connection through a bastion runs on: a `direct-tcpip` channel of the
//! bastion's session whose incoming side is always drained.
//!
//! Why not russh's own `Channel::into_stream`: russh hands a channel's incoming data to
//! its reader with a bounded queue, and the bastion's whole session waits when that queue
//! is full. The inner SSH session does not read its stream while it is busy writing, so a
//! long upload through a bastion filled the queue with the target's window adjustments,
//! the bastion session stopped — including the window adjustments the upload itself was
//! waiting for — and the transfer hung for good. Here a task moves every incoming chunk
//! into an unbounded queue at once, so the bastion session never waits on us. What that
//! queue can hold is bounded by what the inner session has allowed the target to send
//! (its own channel windows), not by the size of anything we upload.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf as _, Bytes};
use russh::client::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

pub struct Tunnel {
    incoming: mpsc::UnboundedReceiver<Bytes>,
    /// What is left of the chunk the last read did not take whole.
    pending: Bytes,
    writer: Pin<Box<dyn AsyncWrite + Send + Sync>>,
    /// Closes the channel on the bastion when the inner session is gone.
    channel: Option<ChannelWriteHalf<Msg>>,
}

impl Tunnel {
    pub fn new(channel: Channel<Msg>) -> Tunnel {
        let (mut read, write) = channel.split();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(msg) = read.wait().await {
                match msg {
                    // The inner session is gone: nobody wants the rest.
                    ChannelMsg::Data { data } if tx.send(data.clone()).is_err() => break,
                    ChannelMsg::Eof | ChannelMsg::Close => break,
                    _ => {}
                }
            }
        });
        Tunnel {
            incoming: rx,
            pending: Bytes::new(),
            writer: Box::pin(write.make_writer()),
            channel: Some(write),
        }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match self.incoming.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => self.pending = chunk,
                // The channel ended: end of stream.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = buf.remaining().min(self.pending.len());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writer.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.as_mut().poll_shutdown(cx)
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Some(channel) = self.channel.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = channel.close().await;
            });
        }
    }
}
