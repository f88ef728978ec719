//! The OpenID Connect relying party: an applicant proves its email (and through it its
//! organisation) by logging in at an identity provider the deployment trusts.
//!
//! Authorization code flow with PKCE, `state` and `nonce`. The ID token's signature is checked
//! against the provider's published keys (asymmetric algorithms only, so `alg: none` and
//! HMAC tricks are refused), and so are its issuer, audience, expiry and nonce. A flow is
//! single-use and expires after ten minutes; replaying a callback finds nothing.
//!
//! The HTTP client never follows redirects: a provider cannot bounce the server's requests to
//! other hosts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use escape_proto::ErrorCode;
use escape_proto::vetting::VerifiedClaims;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use time::OffsetDateTime;

use crate::config::{Oidc, OidcProvider};
use crate::error::ApiError;

/// How long a login may take from start to callback.
const FLOW_LIFETIME: Duration = Duration::from_secs(600);
/// Pending logins kept at most (each needs a valid poll token to start).
const MAX_FLOWS: usize = 10_000;

struct Flow {
    application: String,
    provider: String,
    pkce_verifier: String,
    nonce: String,
    started: Instant,
}

pub struct RelyingParty {
    providers: HashMap<String, OidcProvider>,
    redirect_url: String,
    http: openidconnect::reqwest::Client,
    flows: Mutex<HashMap<String, Flow>>,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("providers", &self.providers.keys().collect::<Vec<_>>())
            .field("redirect_url", &self.redirect_url)
            .finish_non_exhaustive()
    }
}

fn refused(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

fn provider_error(provider: &str, what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(provider, error = %e, "{what}");
    ApiError::new(
        ErrorCode::Precondition,
        format!("identity provider {provider}: {what}: {e}"),
    )
}

impl RelyingParty {
    pub fn new(config: &Oidc, enroll_address: &str) -> Result<Self, ApiError> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| ApiError::internal(&e))?;
        let redirect_url = config
            .redirect_url
            .clone()
            .unwrap_or_else(|| format!("https://{enroll_address}/enroll/v1/oidc/callback"));
        Ok(Self {
            providers: config
                .providers
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect(),
            redirect_url,
            http,
            flows: Mutex::new(HashMap::new()),
        })
    }

    pub fn provider_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.providers.keys().cloned().collect();
        names.sort();
        names
    }

    fn provider(&self, name: &str) -> Result<&OidcProvider, ApiError> {
        self.providers.get(name).ok_or_else(|| {
            ApiError::new(
                ErrorCode::NotFound,
                format!(
                    "no identity provider {name:?}; this deployment has: {}",
                    self.provider_names().join(", ")
                ),
            )
        })
    }

    async fn client(
        &self,
        provider: &OidcProvider,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        ApiError,
    > {
        let issuer = IssuerUrl::new(provider.issuer.clone())
            .map_err(|e| provider_error(&provider.name, "bad issuer URL", e))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| provider_error(&provider.name, "discovery failed", e))?;
        let secret = match &provider.client_secret_env {
            Some(var) => std::env::var(var).unwrap_or_default(),
            None => provider.client_secret.clone(),
        };
        let secret = (!secret.is_empty()).then(|| ClientSecret::new(secret));
        let redirect = RedirectUrl::new(self.redirect_url.clone())
            .map_err(|e| provider_error(&provider.name, "bad redirect URL", e))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            secret,
        )
        .set_redirect_uri(redirect))
    }

    /// Starts a login for `application` at `provider`; returns the URL to open in a browser.
    pub async fn start(&self, application: &str, provider_name: &str) -> Result<String, ApiError> {
        let provider = self.provider(provider_name)?;
        let client = self.client(provider).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let mut flows = self
            .flows
            .lock()
            .map_err(|_| ApiError::internal(&"oidc lock poisoned"))?;
        flows.retain(|_, f| f.started.elapsed() < FLOW_LIFETIME);
        if flows.len() >= MAX_FLOWS {
            return Err(ApiError::new(
                ErrorCode::Precondition,
                "too many logins in progress; try again later",
            ));
        }
        flows.insert(
            state.secret().clone(),
            Flow {
                application: application.to_owned(),
                provider: provider_name.to_owned(),
                pkce_verifier: verifier.secret().clone(),
                nonce: nonce.secret().clone(),
                started: Instant::now(),
            },
        );
        Ok(url.to_string())
    }

    /// Finishes a login: the flow named by `state` is spent whatever the outcome. Returns the
    /// application and what the ID token proves.
    pub async fn finish(
        &self,
        state: &str,
        code: &str,
    ) -> Result<(String, VerifiedClaims), ApiError> {
        let flow = self
            .flows
            .lock()
            .map_err(|_| ApiError::internal(&"oidc lock poisoned"))?
            .remove(state)
            .filter(|f| f.started.elapsed() < FLOW_LIFETIME)
            .ok_or_else(|| {
                refused("unknown, used or expired login (state); start the verification again")
            })?;
        let provider = self.provider(&flow.provider)?;
        let client = self.client(provider).await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| provider_error(&provider.name, "no token endpoint", e))?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| provider_error(&provider.name, "code exchange failed", e))?;
        let id_token = token.id_token().ok_or_else(|| {
            refused(format!(
                "identity provider {}: no ID token in the answer",
                provider.name
            ))
        })?;
        let verifier = client.id_token_verifier().set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::RsaSsaPssSha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ]);
        let claims = id_token
            .claims(&verifier, &Nonce::new(flow.nonce))
            .map_err(|e| {
                refused(format!(
                    "identity provider {}: ID token refused: {e}",
                    provider.name
                ))
            })?;
        let mut email = claims
            .email()
            .filter(|_| claims.email_verified() == Some(true))
            .map(|e| e.as_str().to_lowercase());
        let mut name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_owned());
        if email.is_none() {
            // Many providers put profile claims only in the UserInfo answer. It is fetched with
            // the access token and must name the same subject as the verified ID token.
            let request = client
                .user_info(token.access_token().clone(), Some(claims.subject().clone()))
                .map_err(|e| provider_error(&provider.name, "no UserInfo endpoint", e))?;
            let info: openidconnect::core::CoreUserInfoClaims =
                request.request_async(&self.http).await.map_err(|e| {
                    refused(format!(
                        "identity provider {}: UserInfo refused: {e}",
                        provider.name
                    ))
                })?;
            email = info
                .email()
                .filter(|_| info.email_verified() == Some(true))
                .map(|e| e.as_str().to_lowercase());
            name = name.or_else(|| {
                info.name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.as_str().to_owned())
            });
        }
        let rule = email.as_deref().and_then(|email| {
            let domain = email.rsplit_once('@')?.1;
            provider.organisations.iter().find(|r| {
                r.email_domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(domain))
            })
        });
        let verified = VerifiedClaims {
            provider: provider.name.clone(),
            issuer: claims.issuer().as_str().to_owned(),
            subject: claims.subject().as_str().to_owned(),
            email,
            name,
            organisation: rule.map(|r| r.organisation.clone()),
            country: rule.and_then(|r| r.country.clone()),
            at: OffsetDateTime::now_utc(),
        };
        tracing::info!(application = %flow.application, provider = %provider.name, subject = %verified.subject, "identity verified");
        Ok((flow.application, verified))
    }
}
