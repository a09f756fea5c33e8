//! A fault-injecting HTTP proxy for the EC2 side (moto has no fault injection): forwards each
//! request to the upstream and, per configured rates, answers `RequestLimitExceeded` (503),
//! `InternalError` (500), adds latency, or drops the connection. Loopback only.
//!
//! `PUT /_proxy/config` `{"throttleRate":0..1,"errorRate":0..1,"latencyMs":n,"dropRate":0..1}`;
//! `GET /_proxy/stats` → counts of forwarded and injected responses.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Upstream address (host:port) to forward to.
    #[arg(long)]
    upstream: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default)]
    throttle_rate: f64,
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    drop_rate: f64,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Stats {
    forwarded: u64,
    throttled: u64,
    errors: u64,
    dropped: u64,
}

struct State {
    config: Config,
    stats: Stats,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!(
        "fault-proxy listening on http://{} → {}",
        listener.local_addr()?,
        args.upstream
    );
    let state = Arc::new(Mutex::new(State {
        config: Config::default(),
        stats: Stats::default(),
    }));
    let upstream = Arc::new(args.upstream);
    loop {
        let (conn, _) = listener.accept().await?;
        let state = state.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let _ = serve(conn, state, &upstream).await;
        });
    }
}

/// Reads one HTTP/1.1 request: (head, body).
async fn read_request(conn: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

fn respond(status: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn ec2_error(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
    );
    respond(status, "text/xml", &body)
}

async fn serve(mut conn: TcpStream, state: Arc<Mutex<State>>, upstream: &str) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut conn).await? else {
        return Ok(());
    };
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    if path.starts_with("/_proxy/") {
        let reply = {
            let mut s = state.lock().await;
            if path == "/_proxy/config" && head.starts_with("PUT") {
                match serde_json::from_slice::<Config>(&body) {
                    Ok(c) => {
                        s.config = c;
                        respond(
                            "200 OK",
                            "application/json",
                            &serde_json::to_string(&s.config).unwrap_or_default(),
                        )
                    }
                    Err(e) => respond("400 Bad Request", "text/plain", &format!("invalid config: {e}")),
                }
            } else if path == "/_proxy/stats" {
                respond(
                    "200 OK",
                    "application/json",
                    &serde_json::to_string(&s.stats).unwrap_or_default(),
                )
            } else {
                respond("404 Not Found", "text/plain", "unknown admin path")
            }
        };
        return conn.write_all(&reply).await;
    }

    enum Fault {
        Throttle,
        Error,
        Drop,
    }
    let (latency, fault) = {
        let mut s = state.lock().await;
        let mut rng = rand::rng();
        let c = s.config.clone();
        let fault = if c.drop_rate > 0.0 && rng.random::<f64>() < c.drop_rate {
            s.stats.dropped += 1;
            Some(Fault::Drop)
        } else if c.throttle_rate > 0.0 && rng.random::<f64>() < c.throttle_rate {
            s.stats.throttled += 1;
            Some(Fault::Throttle)
        } else if c.error_rate > 0.0 && rng.random::<f64>() < c.error_rate {
            s.stats.errors += 1;
            Some(Fault::Error)
        } else {
            s.stats.forwarded += 1;
            None
        };
        (c.latency_ms, fault)
    };
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    match fault {
        Some(Fault::Drop) => return Ok(()),
        Some(Fault::Throttle) => {
            return conn
                .write_all(&ec2_error(
                    "503 Service Unavailable",
                    "RequestLimitExceeded",
                    "Request limit exceeded.",
                ))
                .await
        }
        Some(Fault::Error) => {
            return conn
                .write_all(&ec2_error(
                    "500 Internal Server Error",
                    "InternalError",
                    "An internal error has occurred.",
                ))
                .await
        }
        None => {}
    }
    // Forward with one connection per request.
    let mut up = TcpStream::connect(upstream).await?;
    let head: String = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect::<Vec<_>>()
        .join("\r\n");
    let head = head.trim_end_matches("\r\n").to_string() + "\r\nconnection: close\r\n\r\n";
    up.write_all(head.as_bytes()).await?;
    up.write_all(&body).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    conn.write_all(&response).await
}
