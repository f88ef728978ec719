//! A mutual-TLS connection to 127.0.0.1, as every peer's client opens it.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Connects over TCP and completes the handshake with `config`.
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    over(tcp, config).await
}

/// Completes the handshake on a TCP connection already open (NATS speaks first in plain text).
pub async fn over(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from("127.0.0.1").context("server name")?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .context("TLS handshake")
}
