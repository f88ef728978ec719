//! The accept loop: TCP, then the TLS handshake (bounded in time), then HTTP/1.1 with upgrades
//! for the WebSocket. The member id read from the verified client certificate is attached to
//! every request of the connection as a [`PeerIdentity`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::Limits;
use crate::flood::Buckets;
use crate::identity::{CertificateExpiry, PeerIdentity};
use crate::sessions::Sessions;

/// The TLS configuration for the next handshake. The main listener's changes when the
/// revocation list does; each accepted connection asks for the current one.
pub type TlsSource = Arc<dyn Fn() -> Arc<rustls::ServerConfig> + Send + Sync>;

/// Accepts connections until `shutdown` fires; every connection runs as a task of `tracker`.
/// With `sessions`, each connection of a member is registered so that suspending or revoking
/// the member closes it.
pub async fn accept_loop(
    listener: TcpListener,
    tls: TlsSource,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    sessions: Option<Arc<Sessions>>,
) {
    let per_address = PerAddress::new(limits.connections_per_address);
    let handshakes = Buckets::default();
    let (rate, burst) = (
        f64::from(limits.handshakes_per_second_per_address),
        f64::from(limits.handshake_burst_per_address),
    );
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: log, pause, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(wait) = handshakes.take(peer.ip(), rate, burst, 1.0) {
            // Also before any TLS work: the handshake is what costs the server.
            tracing::info!(%peer, retry_in_ms = wait.as_millis(), "connection refused: too many new connections from this address");
            drop(tcp);
            continue;
        }
        let Some(slot) = per_address.take(peer.ip()) else {
            // Closed before any TLS work: a flood from one host costs an accept and a close.
            tracing::info!(%peer, limit = limits.connections_per_address, "connection refused: too many open from this address");
            drop(tcp);
            continue;
        };
        let acceptor = TlsAcceptor::from(tls());
        let (app, limits, shutdown, sessions) = (
            app.clone(),
            limits.clone(),
            shutdown.clone(),
            sessions.clone(),
        );
        tracker.spawn(async move {
            serve_connection(tcp, peer, acceptor, app, limits, shutdown, sessions).await;
            drop(slot);
        });
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    limits: Limits,
    shutdown: CancellationToken,
    sessions: Option<Arc<Sessions>>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(limits.handshake_timeout(), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, reason = %e, "TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let expiry = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| escape_certs::not_after(c).ok())
        .map(CertificateExpiry);
    let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        Some(cert) => match escape_certs::member_id_of(cert) {
            Ok(id) => PeerIdentity::Member(id),
            Err(e) => PeerIdentity::Unidentified(e.to_string()),
        },
        // Only the enrollment listener lets a peer in without a certificate.
        None => PeerIdentity::Anonymous,
    };
    let cut = CancellationToken::new();
    let _registration = match (&sessions, &identity) {
        (Some(sessions), PeerIdentity::Member(id)) => {
            let cut = cut.clone();
            Some(sessions.register(id, Box::new(move |_, _| cut.cancel())))
        }
        _ => None,
    };
    tracing::debug!(%peer, ?identity, "connection accepted");
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(identity.clone());
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            if let Some(expiry) = expiry {
                request.extensions_mut().insert(expiry);
            }
            let app = app.clone();
            async move {
                Ok::<_, Infallible>(
                    app.oneshot(request.map(axum::body::Body::new))
                        .await
                        .unwrap_or_else(|e| match e {}),
                )
            }
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout())
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(tls), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
        () = cut.cancelled() => {
            tracing::info!(%peer, "connection closed: the member's access was withdrawn");
        }
    }
}

/// Open connections per IP address, with a cap.
#[derive(Debug, Clone)]
struct PerAddress {
    limit: u32,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>>,
}

/// One connection's place in its address's count; given back on drop.
#[derive(Debug)]
struct Slot {
    ip: std::net::IpAddr,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, u32>>>,
}

impl PerAddress {
    fn new(limit: u32) -> Self {
        Self {
            limit,
            open: Arc::default(),
        }
    }

    fn take(&self, ip: std::net::IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            ip,
            open: self.open.clone(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock()
            && let Some(count) = open.get_mut(&self.ip)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_limit_and_slots_come_back() {
        let per = PerAddress::new(2);
        let a: std::net::IpAddr = [10, 0, 0, 1].into();
        let b: std::net::IpAddr = [10, 0, 0, 2].into();
        let first = per.take(a).expect("first");
        let _second = per.take(a).expect("second");
        assert!(per.take(a).is_none(), "third from the same address");
        assert!(per.take(b).is_some(), "other addresses are not affected");
        drop(first);
        assert!(per.take(a).is_some(), "a closed connection frees its slot");
    }
}
