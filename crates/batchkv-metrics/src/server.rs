//! The HTTP endpoint: `GET /metrics` (Prometheus text) and `GET /health`, on `tiny_http`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tiny_http::{Header, Method, Response, Server};

/// The endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}: {message}")]
pub struct ServeError {
    /// The address asked for.
    pub addr: String,
    /// Why.
    pub message: String,
}

/// A running endpoint; stops when dropped (or with [`MetricsServer::stop`]).
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address it listens on (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Serves `render()` at `GET /metrics` and `ok` at `GET /health` on `addr` (for example
/// `127.0.0.1:9100`; bind to another interface only on purpose). Other paths answer 404, other
/// methods 405; nothing a client sends can stop it.
///
/// # Errors
/// The address cannot be bound.
pub fn serve(
    addr: &str,
    render: impl Fn() -> String + Send + 'static,
) -> Result<MetricsServer, ServeError> {
    let server = Server::http(addr).map_err(|e| ServeError {
        addr: addr.to_owned(),
        message: e.to_string(),
    })?;
    let bound = server.server_addr().to_ip().ok_or_else(|| ServeError {
        addr: addr.to_owned(),
        message: "not an IP address".into(),
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("batchkv-metrics-http".into())
        .spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                let req = match server.recv_timeout(Duration::from_millis(100)) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(_) => break,
                };
                let text = |s: &str, code: u16| {
                    Response::from_string(s.to_owned())
                        .with_status_code(code)
                        .with_header(content_type("text/plain; charset=utf-8"))
                };
                let path = req.url().split('?').next().unwrap_or("").to_owned();
                let response = match (req.method(), path.as_str()) {
                    (Method::Get, "/metrics") => Response::from_string(render()).with_header(
                        content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    ),
                    (Method::Get, "/health") => text("ok\n", 200),
                    (_, "/metrics" | "/health") => text("method not allowed\n", 405),
                    _ => text("not found\n", 404),
                };
                let _ = req.respond(response);
            }
        })
        .map_err(|e| ServeError {
            addr: addr.to_owned(),
            message: e.to_string(),
        })?;
    Ok(MetricsServer {
        addr: bound,
        stop,
        thread: Some(thread),
    })
}

fn content_type(v: &str) -> Header {
    Header::from_bytes("Content-Type", v).expect("a valid header")
}
