//! A scripted HTTP server on 127.0.0.1 for registry behaviour the real registry cannot be
//! made to show (a Bearer token service, a schema 1 manifest, a lying digest header).
//! Each request (with its body) is answered by the test's handler and recorded for later
//! assertions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the server saw it. Header names are lowercase.
#[derive(Clone, Debug)]
pub struct FakeRequest {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// The query string as sent, in order.
    pub raw_query: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A canned reply.
pub struct FakeResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeResponse {
    pub fn new(status: u16) -> FakeResponse {
        FakeResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> FakeResponse {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> FakeResponse {
        self.body = body.into();
        self
    }
}

type Handler = Arc<dyn Fn(&FakeRequest) -> FakeResponse + Send + Sync>;

/// The server; it stops when the test's runtime ends.
pub struct FakeRegistry {
    pub addr: String,
    requests: Arc<Mutex<Vec<FakeRequest>>>,
}

impl FakeRegistry {
    /// Starts serving on a free port; `handler` receives the server's own address too, for
    /// challenges that point back at it.
    pub async fn start(
        handler: impl Fn(&str, &FakeRequest) -> FakeResponse + Send + Sync + 'static,
    ) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let own = addr.clone();
        let handler: Handler = Arc::new(move |r| handler(&own, r));
        let log = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let handler = handler.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                    let mut request = parse(&String::from_utf8_lossy(&buf[..end]));
                    // Read the whole body, so the client never sees its upload cut short.
                    let length: usize = request
                        .headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let mut body = buf[end..].to_vec();
                    while body.len() < length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => body.extend_from_slice(&chunk[..n]),
                        }
                    }
                    request.body = body;
                    log.lock().unwrap().push(request.clone());
                    let reply = handler(&request);
                    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
                    for (k, v) in &reply.headers {
                        head.push_str(&format!("{k}: {v}\r\n"));
                    }
                    head.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
                    let _ = stream.write_all(head.as_bytes()).await;
                    if request.method != "HEAD" {
                        let _ = stream.write_all(&reply.body).await;
                    }
                    let _ = stream.shutdown().await;
                });
            }
        });
        FakeRegistry { addr, requests }
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn parse(head: &str) -> FakeRequest {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default();
    let url = reqwest::Url::parse(&format!("http://fake{target}")).expect("request target");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    FakeRequest {
        method,
        path: url.path().to_string(),
        query: url.query_pairs().into_owned().collect(),
        raw_query: url.query().unwrap_or_default().to_string(),
        headers,
        body: Vec::new(),
    }
}
