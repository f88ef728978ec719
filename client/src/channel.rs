//! The real-time channel: a WebSocket over mutual TLS, speaking the frames of `escape_proto::frame`.

use escape_proto::frame::ServerMessage;
use escape_proto::{Body, ClientFrame, ClientRequest, ErrorCode, RoomName, ServerFrame};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::api::{Client, server_error};
use crate::error::ClientError;

/// The WebSocket settings of a member's channel. Reads go through a 4 KiB buffer: the library
/// fills its whole read buffer with zeros before every read, and at its default size (128 KiB)
/// that was most of what a client receiving events of a few hundred bytes spent (a profile of
/// the load generator under `escape-load fanout`, whose clients use these settings). A larger
/// message still arrives whole: frames are assembled apart from the read buffer.
pub fn websocket_config() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(16 << 20))
        .read_buffer_size(4 * 1024)
}

/// An open real-time channel.
#[derive(Debug)]
pub struct Channel {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Frames that arrived while waiting for the answer to a request.
    pending: std::collections::VecDeque<ServerMessage>,
}

/// What the server said when it stored a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    pub seq: u64,
    pub duplicate: bool,
}

impl Channel {
    /// Connects, with 15 seconds for TCP, TLS and the upgrade together.
    pub async fn connect(client: &Client) -> Result<Self, ClientError> {
        let connect_error = |message: String| ClientError::Connect {
            server: client.profile.server.clone(),
            message,
        };
        let attempt = async {
            let tcp = TcpStream::connect(client.addr)
                .await
                .map_err(|e| connect_error(e.to_string()))?;
            Self::over(client, tcp).await
        };
        tokio::time::timeout(std::time::Duration::from_secs(15), attempt)
            .await
            .map_err(|_| connect_error("timed out after 15 s".into()))?
    }

    /// Opens the channel over a TCP connection the caller made (to tune its socket, say).
    pub async fn over(client: &Client, tcp: TcpStream) -> Result<Self, ClientError> {
        let server = client.profile.server.clone();
        let connect_error = |message: String| ClientError::Connect {
            server: server.clone(),
            message,
        };
        let _ = tcp.set_nodelay(true);
        let url = format!(
            "{}/v1/ws",
            client.base_url().replacen("https://", "wss://", 1)
        );
        let connector = Connector::Rustls(client.tls.clone());
        let ws = tokio_tungstenite::client_async_tls_with_config(
            url,
            tcp,
            Some(websocket_config()),
            Some(connector),
        )
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(response) => {
                let status = response.status().as_u16();
                match response.body().as_deref() {
                    Some(body) if !body.is_empty() => Err(server_error(status, body)),
                    // The coded body may come in a later TLS record than the headers; ask why below.
                    _ => Ok(status),
                }
            }
            other => Err(connect_error(other.to_string())),
        });
        let ws = match ws {
            Ok((ws, _)) => ws,
            Err(Err(error)) => return Err(error),
            Err(Ok(status)) => {
                // The upgrade is refused for the same reasons every route is: `me` names the reason.
                return Err(match client.me().await {
                    Err(error) => error,
                    Ok(_) => ClientError::Server {
                        status,
                        code: escape_proto::ErrorCode::Internal,
                        message: format!(
                            "the server refused the WebSocket upgrade with HTTP {status}"
                        ),
                    },
                });
            }
        };
        Ok(Self {
            ws,
            next_id: 0,
            pending: Default::default(),
        })
    }

    /// Sends a frame and returns the request id it carries.
    pub async fn request(&mut self, frame: ClientFrame) -> Result<String, ClientError> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let text = ClientRequest::new(id.clone(), frame).encode();
        self.send_text(text).await?;
        Ok(id)
    }

    /// Sends raw text as one frame (tests use it to send what a buggy client would).
    pub async fn send_text(&mut self, text: String) -> Result<(), ClientError> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| ClientError::Closed(Some(e.to_string())))
    }

    /// The next frame from the server; `None` when the connection closed.
    pub async fn next(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(Some(frame));
        }
        self.read().await
    }

    async fn read(&mut self) -> Result<Option<ServerMessage>, ClientError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return ServerMessage::decode(text.as_str())
                        .map(Some)
                        .map_err(|e| ClientError::Protocol(format!("undecodable frame: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(ClientError::Closed(frame.map(|f| f.reason.to_string())));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Closed(Some(e.to_string()))),
                None => return Ok(None),
            }
        }
    }

    /// Waits for the answer to request `id`, keeping other frames for [`Channel::next`].
    /// An error frame for that request becomes an error.
    pub async fn answer(&mut self, id: &str) -> Result<ServerFrame, ClientError> {
        let kept = self
            .pending
            .iter()
            .position(|m| m.id.as_deref() == Some(id));
        let mut early = kept.and_then(|i| self.pending.remove(i));
        loop {
            let message = match early.take() {
                Some(message) => message,
                None => match self.read().await? {
                    Some(message) => message,
                    None => return Err(ClientError::Closed(None)),
                },
            };
            if message.id.as_deref() != Some(id) {
                if let ServerFrame::Error {
                    code,
                    message: text,
                } = &message.frame
                    && message.id.is_none()
                    && matches!(code, ErrorCode::SlowConsumer | ErrorCode::ShuttingDown)
                {
                    return Err(ClientError::Closed(Some(format!("{text} ({code})"))));
                }
                self.pending.push_back(message);
                continue;
            }
            return match message.frame {
                ServerFrame::Error { code, message } => Err(ClientError::Server {
                    status: 0,
                    code,
                    message,
                }),
                frame => Ok(frame),
            };
        }
    }

    /// Subscribes to a room; returns the room's durable head at that moment.
    pub async fn subscribe(
        &mut self,
        room: &RoomName,
        since: Option<u64>,
    ) -> Result<u64, ClientError> {
        let id = self
            .request(ClientFrame::Subscribe {
                room: room.clone(),
                since,
            })
            .await?;
        match self.answer(&id).await? {
            ServerFrame::Subscribed { head, .. } => Ok(head),
            other => Err(ClientError::Protocol(format!(
                "expected subscribed, got {other:?}"
            ))),
        }
    }

    /// Sends a message and waits until the server says it is durably stored.
    pub async fn send(
        &mut self,
        room: &RoomName,
        client_msg_id: &str,
        body: Body,
    ) -> Result<Ack, ClientError> {
        let id = self
            .request(ClientFrame::Send {
                room: room.clone(),
                client_msg_id: client_msg_id.to_owned(),
                body,
            })
            .await?;
        match self.answer(&id).await? {
            ServerFrame::Ack { seq, duplicate, .. } => Ok(Ack { seq, duplicate }),
            other => Err(ClientError::Protocol(format!(
                "expected ack, got {other:?}"
            ))),
        }
    }

    /// Shares indicators over the channel; returns what became of each.
    pub async fn share_indicators(
        &mut self,
        room: &RoomName,
        indicators: Vec<escape_proto::indicator::IndicatorDraft>,
    ) -> Result<escape_proto::indicator::ShareReport, ClientError> {
        let id = self
            .request(ClientFrame::ShareIndicator {
                room: room.clone(),
                indicators,
            })
            .await?;
        match self.answer(&id).await? {
            ServerFrame::IndicatorsShared { report, .. } => Ok(report),
            other => Err(ClientError::Protocol(format!(
                "expected indicators_shared, got {other:?}"
            ))),
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// A fresh client message id.
pub fn new_client_msg_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    /// The load generator's Escape clients use these settings too: a read buffer back at the
    /// library's default would cost every client that much zero-filling again.
    #[test]
    fn channels_read_through_a_small_buffer_and_take_large_messages() {
        let config = super::websocket_config();
        assert!(
            config.read_buffer_size <= 8 * 1024,
            "{}",
            config.read_buffer_size
        );
        assert_eq!(config.max_message_size, Some(16 << 20));
    }
}
