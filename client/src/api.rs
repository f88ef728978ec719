//! The HTTP API, typed: one method per route.

use std::net::SocketAddr;
use std::sync::Arc;

use escape_proto::alert::{Alert, AlertReport, AlertStatus, SendAlert};
use escape_proto::audit::{AuditEntry, AuditQuery, KeyRotation};
use escape_proto::file::{
    AddCopies, FileInfo, KeyGeneration, NewGeneration, RoomKeys, StartUpload, UploadStatus,
};
use escape_proto::indicator::{
    Forward, IndicatorRecord, ObservableType, Relabel, ShareIndicators, ShareReport, Sighting,
};
use escape_proto::room::{
    CreateRoom, HistoryPage, HistoryQuery, PolicyDocument, PolicyImpact, PolicyTemplate,
    ReadMarker, RoomList, RoomSettings, RoomSummary, SearchQuery,
};
use escape_proto::vetting::{
    Application, ApplicationList, ApplicationStatus, Approve, AttributeUpdate, CreateInvite,
    Directory, DirectoryQuery, Invite, MemberHistory, MemberList, Reason, Renew, Renewed,
    StatusChange, VouchRequest,
};
use escape_proto::{ErrorBody, ErrorCode, Member, MemberId, Published, RoomName};
use serde::de::DeserializeOwned;

use crate::error::ClientError;
use crate::profile::Profile;

/// A member's connection to its deployment: the HTTP API here, the real-time channel through
/// [`crate::Channel::connect`].
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) profile: Profile,
    pub(crate) addr: SocketAddr,
    pub(crate) tls: Arc<rustls::ClientConfig>,
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// Resolves the server address and prepares TLS; no connection is made yet.
    pub async fn new(profile: Profile) -> Result<Self, ClientError> {
        let tls = crate::tls::client_config(&profile)?;
        let addr = tokio::net::lookup_host(&profile.server)
            .await
            .map_err(|e| ClientError::Connect {
                server: profile.server.clone(),
                message: e.to_string(),
            })?
            .next()
            .ok_or_else(|| ClientError::Connect {
                server: profile.server.clone(),
                message: "the name resolves to no address".into(),
            })?;
        let host = url_host(&profile.server_name);
        let base = format!("https://{host}:{}", addr.port());
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls.clone())
            .resolve(&profile.server_name, addr)
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::BadProfile(e.to_string()))?;
        Ok(Self {
            profile,
            addr,
            tls: Arc::new(tls),
            http,
            base,
        })
    }

    /// The server's resolved socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// `https://host:port` as used for requests (the host is the certificate's server name).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub async fn me(&self) -> Result<Member, ClientError> {
        self.call(self.http.get(self.url("/v1/me"))).await
    }

    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, ClientError> {
        let list: RoomList = self.call(self.http.get(self.url("/v1/rooms"))).await?;
        Ok(list.rooms)
    }

    pub async fn create_room(
        &self,
        name: RoomName,
        topic: String,
    ) -> Result<RoomSummary, ClientError> {
        let body = CreateRoom::new(name, topic);
        self.call(self.http.post(self.url("/v1/rooms")).json(&body))
            .await
    }

    pub async fn join(&self, room: &RoomName) -> Result<RoomSummary, ClientError> {
        self.call(self.http.post(self.url(&format!("/v1/rooms/{room}/join"))))
            .await
    }

    /// Removes `member` from `room` (its admin, or a deployment admin).
    pub async fn remove_member(
        &self,
        room: &RoomName,
        member: &MemberId,
        reason: String,
    ) -> Result<(), ClientError> {
        self.call_empty(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/members/{member}/remove")))
                .json(&Reason { reason }),
        )
        .await
    }

    pub async fn leave(&self, room: &RoomName) -> Result<RoomSummary, ClientError> {
        self.call(self.http.post(self.url(&format!("/v1/rooms/{room}/leave"))))
            .await
    }

    pub async fn history(
        &self,
        room: &RoomName,
        query: &HistoryQuery,
    ) -> Result<HistoryPage, ClientError> {
        let request = self
            .http
            .get(self.url(&format!("/v1/rooms/{room}/messages")))
            .query(query);
        self.call(request).await
    }

    pub async fn create_invite(&self, expires_in_secs: Option<u64>) -> Result<Invite, ClientError> {
        let body = CreateInvite { expires_in_secs };
        self.call(self.http.post(self.url("/v1/invites")).json(&body))
            .await
    }

    pub async fn vouch(
        &self,
        application: &str,
        comment: String,
    ) -> Result<Application, ClientError> {
        let url = self.url(&format!(
            "/v1/applications/{}/vouch",
            path_part(application)
        ));
        self.call(self.http.post(url).json(&VouchRequest { comment }))
            .await
    }

    pub async fn directory(&self, query: &DirectoryQuery) -> Result<Directory, ClientError> {
        self.call(self.http.get(self.url("/v1/directory")).query(query))
            .await
    }

    pub async fn renew(&self, csr_pem: String) -> Result<Renewed, ClientError> {
        self.call(
            self.http
                .post(self.url("/v1/renew"))
                .json(&Renew { csr_pem }),
        )
        .await
    }

    pub async fn publish(&self, published: &Published) -> Result<Member, ClientError> {
        self.call(self.http.put(self.url("/v1/me/published")).json(published))
            .await
    }

    pub async fn applications(
        &self,
        status: Option<ApplicationStatus>,
    ) -> Result<Vec<Application>, ClientError> {
        let mut request = self.http.get(self.url("/v1/admin/applications"));
        if let Some(status) = status {
            request = request.query(&[("status", status)]);
        }
        let list: ApplicationList = self.call(request).await?;
        Ok(list.applications)
    }

    pub async fn application(&self, id: &str) -> Result<Application, ClientError> {
        self.call(
            self.http
                .get(self.url(&format!("/v1/admin/applications/{}", path_part(id)))),
        )
        .await
    }

    pub async fn approve(
        &self,
        id: &str,
        attributes: AttributeUpdate,
    ) -> Result<Application, ClientError> {
        let url = self.url(&format!("/v1/admin/applications/{}/approve", path_part(id)));
        self.call(self.http.post(url).json(&Approve { attributes }))
            .await
    }

    pub async fn reject(&self, id: &str, reason: String) -> Result<Application, ClientError> {
        let url = self.url(&format!("/v1/admin/applications/{}/reject", path_part(id)));
        self.call(self.http.post(url).json(&Reason { reason }))
            .await
    }

    pub async fn members(&self) -> Result<Vec<Member>, ClientError> {
        let list: MemberList = self
            .call(self.http.get(self.url("/v1/admin/members")))
            .await?;
        Ok(list.members)
    }

    pub async fn member_history(&self, id: &MemberId) -> Result<MemberHistory, ClientError> {
        self.call(
            self.http
                .get(self.url(&format!("/v1/admin/members/{id}/history"))),
        )
        .await
    }

    pub async fn set_status(
        &self,
        id: &MemberId,
        change: StatusChange,
        reason: String,
    ) -> Result<Member, ClientError> {
        let verb = match change {
            StatusChange::Suspend => "suspend",
            StatusChange::Reinstate => "reinstate",
            StatusChange::Revoke => "revoke",
        };
        let url = self.url(&format!("/v1/admin/members/{id}/{verb}"));
        self.call(self.http.post(url).json(&Reason { reason }))
            .await
    }

    pub async fn update_attributes(
        &self,
        id: &MemberId,
        attributes: AttributeUpdate,
        reason: String,
    ) -> Result<Member, ClientError> {
        let url = self.url(&format!("/v1/admin/members/{id}/attributes"));
        let body = serde_json::json!({ "attributes": attributes, "reason": reason });
        self.call(self.http.put(url).json(&body)).await
    }

    /// The policy of `room`, or of the deployment for `None`.
    pub async fn policy(&self, room: Option<&RoomName>) -> Result<PolicyDocument, ClientError> {
        self.call(self.http.get(self.url(&policy_path(room, ""))))
            .await
    }

    pub async fn set_policy(
        &self,
        room: Option<&RoomName>,
        text: String,
    ) -> Result<PolicyDocument, ClientError> {
        let body = PolicyDocument { text, version: 0 };
        self.call(self.http.put(self.url(&policy_path(room, ""))).json(&body))
            .await
    }

    /// A dry run: who would gain or lose access if `text` became the policy.
    pub async fn test_policy(
        &self,
        room: Option<&RoomName>,
        text: String,
    ) -> Result<PolicyImpact, ClientError> {
        let body = PolicyDocument { text, version: 0 };
        self.call(
            self.http
                .post(self.url(&policy_path(room, "/test")))
                .json(&body),
        )
        .await
    }

    pub async fn policy_templates(&self) -> Result<Vec<PolicyTemplate>, ClientError> {
        self.call(self.http.get(self.url("/v1/policy/templates")))
            .await
    }

    /// Creates a room with all its settings.
    pub async fn create_room_with(&self, request: &CreateRoom) -> Result<RoomSummary, ClientError> {
        self.call(self.http.post(self.url("/v1/rooms")).json(request))
            .await
    }

    /// Replaces the master key that seals the server's store (admins); the server keeps serving.
    pub async fn rotate_master_key(&self) -> Result<KeyRotation, ClientError> {
        self.call(self.http.post(self.url("/v1/admin/keys/rotate")))
            .await
    }

    /// The room's file key generations, with this member's sealed copies.
    pub async fn room_keys(&self, room: &RoomName) -> Result<RoomKeys, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/rooms/{room}/keys"))))
            .await
    }

    pub async fn new_key_generation(
        &self,
        room: &RoomName,
        request: &NewGeneration,
    ) -> Result<KeyGeneration, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/keys")))
                .json(request),
        )
        .await
    }

    pub async fn add_key_copies(
        &self,
        room: &RoomName,
        generation: u32,
        request: &AddCopies,
    ) -> Result<(), ClientError> {
        self.call_empty(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/keys/{generation}/copies")))
                .json(request),
        )
        .await
    }

    pub async fn start_upload(
        &self,
        room: &RoomName,
        request: &StartUpload,
    ) -> Result<UploadStatus, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/files")))
                .json(request),
        )
        .await
    }

    pub async fn upload_status(
        &self,
        room: &RoomName,
        file_id: &str,
    ) -> Result<UploadStatus, ClientError> {
        self.call(
            self.http
                .get(self.url(&format!("/v1/rooms/{room}/files/{file_id}/upload"))),
        )
        .await
    }

    /// Sends `bytes` of ciphertext at `offset`.
    pub async fn put_chunk(
        &self,
        room: &RoomName,
        file_id: &str,
        offset: u64,
        bytes: Vec<u8>,
    ) -> Result<UploadStatus, ClientError> {
        self.call(
            self.http
                .put(self.url(&format!("/v1/rooms/{room}/files/{file_id}/content")))
                .query(&[("offset", offset)])
                .timeout(std::time::Duration::from_secs(300))
                .body(bytes),
        )
        .await
    }

    pub async fn complete_upload(
        &self,
        room: &RoomName,
        file_id: &str,
    ) -> Result<FileInfo, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/files/{file_id}/complete"))),
        )
        .await
    }

    pub async fn files(&self, room: &RoomName) -> Result<Vec<FileInfo>, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/rooms/{room}/files"))))
            .await
    }

    /// The ciphertext of a file from `offset` on, as a response to read in chunks.
    pub async fn file_content(
        &self,
        room: &RoomName,
        file_id: &str,
        offset: u64,
    ) -> Result<reqwest::Response, ClientError> {
        let response = self
            .http
            .get(self.url(&format!("/v1/rooms/{room}/files/{file_id}/content")))
            .query(&[("offset", offset)])
            .timeout(std::time::Duration::from_secs(6 * 3600))
            .send()
            .await
            .map_err(|e| self.connect_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.map_err(|e| self.connect_error(&e))?;
        Err(server_error(status.as_u16(), &bytes))
    }

    /// Shares indicators into a room; each is accepted or rejected with its reason.
    pub async fn share_indicators(
        &self,
        room: &RoomName,
        request: &ShareIndicators,
    ) -> Result<ShareReport, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/indicators")))
                .json(request),
        )
        .await
    }

    /// The room's indicators this member may read.
    pub async fn indicators(&self, room: &RoomName) -> Result<Vec<IndicatorRecord>, ClientError> {
        self.call(
            self.http
                .get(self.url(&format!("/v1/rooms/{room}/indicators"))),
        )
        .await
    }

    /// Everywhere a value was shared that this member may read.
    pub async fn search_indicators(
        &self,
        value: &str,
        kind: Option<ObservableType>,
    ) -> Result<Vec<IndicatorRecord>, ClientError> {
        let mut query = vec![("value", value.to_owned())];
        if let Some(kind) = kind {
            query.push(("type", kind.to_string()));
        }
        self.call(
            self.http
                .get(self.url("/v1/indicators/search"))
                .query(&query),
        )
        .await
    }

    /// Reports a sighting; returns how many the indicator has.
    pub async fn sight(
        &self,
        room: &RoomName,
        seq: u64,
        sighting: &Sighting,
    ) -> Result<u64, ClientError> {
        #[derive(serde::Deserialize)]
        struct Count {
            sightings: u64,
        }
        let count: Count = self
            .call(
                self.http
                    .post(self.url(&format!("/v1/rooms/{room}/indicators/{seq}/sightings")))
                    .json(sighting),
            )
            .await?;
        Ok(count.sightings)
    }

    pub async fn relabel(
        &self,
        room: &RoomName,
        seq: u64,
        tlp: &str,
    ) -> Result<IndicatorRecord, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/indicators/{seq}/relabel")))
                .json(&Relabel {
                    tlp: tlp.to_owned(),
                }),
        )
        .await
    }

    pub async fn forward(
        &self,
        room: &RoomName,
        seq: u64,
        to: &RoomName,
    ) -> Result<IndicatorRecord, ClientError> {
        self.call(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/indicators/{seq}/forward")))
                .json(&Forward { to: to.clone() }),
        )
        .await
    }

    /// The room as a STIX 2.1 bundle (what this member may export).
    pub async fn export_stix(&self, room: &RoomName) -> Result<serde_json::Value, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/rooms/{room}/stix"))))
            .await
    }

    /// Shares a STIX 2.1 bundle's indicators; `tlp` labels objects without a marking.
    pub async fn import_stix(
        &self,
        room: &RoomName,
        bundle: &serde_json::Value,
        tlp: Option<&str>,
    ) -> Result<ShareReport, ClientError> {
        let mut request = self
            .http
            .post(self.url(&format!("/v1/rooms/{room}/stix")))
            .json(bundle);
        if let Some(tlp) = tlp {
            request = request.query(&[("tlp", tlp)]);
        }
        self.call(request).await
    }

    /// Who in the room is online, away or offline.
    pub async fn presence(
        &self,
        room: &RoomName,
    ) -> Result<Vec<escape_proto::room::Presence>, ClientError> {
        self.call(
            self.http
                .get(self.url(&format!("/v1/rooms/{room}/presence"))),
        )
        .await
    }

    /// Marks `room` read up to `seq` (clamped to the newest message).
    pub async fn mark_read(&self, room: &RoomName, seq: u64) -> Result<RoomSummary, ClientError> {
        self.call(
            self.http
                .put(self.url(&format!("/v1/rooms/{room}/read")))
                .json(&ReadMarker { seq }),
        )
        .await
    }

    pub async fn update_room_settings(
        &self,
        room: &RoomName,
        settings: &RoomSettings,
    ) -> Result<RoomSummary, ClientError> {
        self.call(
            self.http
                .put(self.url(&format!("/v1/rooms/{room}/settings")))
                .json(settings),
        )
        .await
    }

    pub async fn invite_to_room(
        &self,
        room: &RoomName,
        member: &MemberId,
    ) -> Result<(), ClientError> {
        self.call_empty(
            self.http
                .post(self.url(&format!("/v1/rooms/{room}/invitations/{member}"))),
        )
        .await
    }

    /// Removes a message's content for everyone.
    pub async fn redact(
        &self,
        room: &RoomName,
        seq: u64,
        reason: String,
    ) -> Result<(), ClientError> {
        let _: serde_json::Value = self
            .call(
                self.http
                    .post(self.url(&format!("/v1/rooms/{room}/messages/{seq}/redact")))
                    .json(&Reason { reason }),
            )
            .await?;
        Ok(())
    }

    /// Messages containing `text` in the rooms this member may read (or one room).
    pub async fn search(
        &self,
        text: &str,
        room: Option<&RoomName>,
    ) -> Result<Vec<escape_proto::Event>, ClientError> {
        let query = SearchQuery {
            text: text.to_owned(),
            room: room.cloned(),
            limit: None,
        };
        self.call(self.http.get(self.url("/v1/search")).query(&query))
            .await
    }

    /// Sends an alert (or, with `dry_run`, resolves its audience only).
    pub async fn send_alert(&self, request: &SendAlert) -> Result<AlertReport, ClientError> {
        self.call(self.http.post(self.url("/v1/alerts")).json(request))
            .await
    }

    /// Alerts addressed to this member that it has not acknowledged.
    pub async fn pending_alerts(&self) -> Result<Vec<Alert>, ClientError> {
        self.call(self.http.get(self.url("/v1/alerts"))).await
    }

    pub async fn ack_alert(&self, id: &str) -> Result<(), ClientError> {
        self.call_empty(self.http.post(self.url(&format!("/v1/alerts/{id}/ack"))))
            .await
    }

    /// Who acknowledged an alert and who has not (its sender and admins).
    pub async fn alert_status(&self, id: &str) -> Result<AlertStatus, ClientError> {
        self.call(self.http.get(self.url(&format!("/v1/alerts/{id}"))))
            .await
    }

    /// Audit entries after `after`, oldest first.
    pub async fn audit(&self, after: u64, limit: u32) -> Result<Vec<AuditEntry>, ClientError> {
        let query = AuditQuery {
            after,
            limit: Some(limit),
        };
        self.call(self.http.get(self.url("/v1/admin/audit")).query(&query))
            .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let response = request.send().await.map_err(|e| self.connect_error(&e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| self.connect_error(&e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(e.to_string()));
        }
        Err(server_error(status.as_u16(), &bytes))
    }

    async fn call_empty(&self, request: reqwest::RequestBuilder) -> Result<(), ClientError> {
        let response = request.send().await.map_err(|e| self.connect_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let bytes = response.bytes().await.map_err(|e| self.connect_error(&e))?;
        Err(server_error(status.as_u16(), &bytes))
    }

    pub(crate) fn connect_error(&self, e: &reqwest::Error) -> ClientError {
        // The useful cause (a TLS alert, a refused connection) is at the bottom of the chain.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message = format!("{message}: {cause}");
            source = cause.source();
        }
        ClientError::Connect {
            server: self.profile.server.clone(),
            message,
        }
    }
}

/// Reads a coded error body; anything else still yields an error that says what came back.
pub(crate) fn server_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => ClientError::Server {
            status,
            code: error.code,
            message: error.message,
        },
        Err(_) => ClientError::Server {
            status,
            code: ErrorCode::Internal,
            message: format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        },
    }
}

fn policy_path(room: Option<&RoomName>, suffix: &str) -> String {
    match room {
        Some(room) => format!("/v1/rooms/{room}/policy{suffix}"),
        None => format!("/v1/policy{suffix}"),
    }
}

/// A user-given id as one path segment: anything but the id alphabet is percent-encoded.
fn path_part(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// IPv6 literals need brackets in URLs.
fn url_host(name: &str) -> String {
    if name.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{name}]")
    } else {
        name.to_owned()
    }
}
