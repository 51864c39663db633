//! A TCP proxy on 127.0.0.1 in front of a real registry: it counts the bytes each way (an
//! independent measure of what a client transferred), and can freeze every connection once
//! a number of bytes went up, so a test can kill a client in the middle of an upload
//! without racing it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The running proxy; its threads stop when it is dropped.
pub struct TcpProxy {
    pub addr: String,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
    frozen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl TcpProxy {
    /// Forwards to `target`. With `freeze_after_up`, once that many bytes went from client
    /// to server every connection stops moving data (it stays open) until the proxy drops.
    pub fn start(target: &str, freeze_after_up: Option<u64>) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let proxy = TcpProxy {
            addr,
            up: Arc::new(AtomicU64::new(0)),
            down: Arc::new(AtomicU64::new(0)),
            frozen: Arc::new(AtomicBool::new(false)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (up, down, frozen, stop) = (
            proxy.up.clone(),
            proxy.down.clone(),
            proxy.frozen.clone(),
            proxy.stop.clone(),
        );
        let target = target.to_string();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                client
                    .set_nonblocking(false)
                    .expect("blocking client socket");
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let pipes = [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        up.clone(),
                        freeze_after_up,
                    ),
                    (server, client, down.clone(), None),
                ];
                for (from, to, counter, freeze_at) in pipes {
                    let (up, frozen, stop) = (up.clone(), frozen.clone(), stop.clone());
                    thread::spawn(move || pipe(from, to, &counter, &up, freeze_at, &frozen, &stop));
                }
            }
        });
        proxy
    }

    /// Bytes from clients to the registry so far.
    pub fn bytes_up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }

    /// Bytes from the registry to clients so far.
    pub fn bytes_down(&self) -> u64 {
        self.down.load(Ordering::Relaxed)
    }

    /// Waits (up to `deadline`) until the freeze point was reached.
    pub fn wait_frozen(&self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if self.frozen.load(Ordering::Relaxed) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    counter: &AtomicU64,
    up: &AtomicU64,
    freeze_at: Option<u64>,
    frozen: &AtomicBool,
    stop: &AtomicBool,
) {
    from.set_read_timeout(Some(Duration::from_millis(100))).ok();
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if frozen.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        // Only forward up to the freeze point, so the registry sees a half-sent request.
        let mut take = n;
        if let Some(limit) = freeze_at {
            let before = up.load(Ordering::Relaxed);
            if before + n as u64 >= limit {
                take = limit.saturating_sub(before) as usize;
                frozen.store(true, Ordering::Relaxed);
            }
        }
        counter.fetch_add(take as u64, Ordering::Relaxed);
        if to.write_all(&buf[..take]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
