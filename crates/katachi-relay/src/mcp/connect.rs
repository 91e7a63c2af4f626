//! One rmcp client session with a remote MCP server: the Streamable HTTP handshake, then a tool
//! list or a tool call, each under a timeout. A session is opened per list or call and closed
//! after it (correctness first: no session outlives the settings it was opened with).

use std::error::Error as StdError;
use std::sync::Arc;

use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, Tool};
use rmcp::service::ClientInitializeError;
use rmcp::service::RunningService;
use rmcp::transport::common::client_side_sse::NeverRetry;
use rmcp::transport::streamable_http_client::{
    StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::worker::WorkerQuitReason;
use rmcp::transport::{DynamicTransportError, StreamableHttpClientTransport};
use rmcp::{RoleClient, ServiceError, ServiceExt};

use super::address::{check_url_host, is_public, AddressRefused, GuardedResolver};
use super::headers::SecretHeaders;
use super::{McpError, McpOptions};

/// Most characters of a server's error message passed on.
const MAX_MESSAGE_CHARS: usize = 500;

/// The HTTP client of every MCP connection: guarded resolver, no redirects, no proxy, rustls
/// (aws-lc-rs) with the system roots plus `extra_ca`.
///
/// # Errors
/// The TLS configuration or the client cannot be built.
pub(super) fn http_client(
    options: &McpOptions,
    extra_ca: Option<&std::path::Path>,
) -> anyhow::Result<reqwest013::Client> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot parse is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path)?;
        use rustls_pki_types::pem::PemObject;
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert?)?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest013::Client::builder()
        .tls_backend_preconfigured(tls)
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: options.allow_private_addresses,
        }))
        .redirect(reqwest013::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(options.connect_timeout)
        .build()?)
}

/// An open MCP session with one server.
pub(super) struct Session<'a> {
    /// The rmcp client.
    service: RunningService<RoleClient, ClientConfig>,
    /// The server's name, for errors.
    name: &'a str,
    /// Its headers (for redaction).
    headers: &'a SecretHeaders,
    /// Limits.
    options: &'a McpOptions,
}

/// Connects to `url` with `headers` and completes the MCP handshake.
///
/// # Errors
/// [`McpError::AddressRefused`], [`McpError::Unreachable`], [`McpError::Timeout`],
/// [`McpError::ServerError`], [`McpError::Misconfigured`] (a URL that does not parse).
pub(super) async fn open<'a>(
    http: &reqwest013::Client,
    options: &'a McpOptions,
    name: &'a str,
    url: &str,
    headers: &'a SecretHeaders,
) -> Result<Session<'a>, McpError> {
    let parsed = url::Url::parse(url).map_err(|_| McpError::Misconfigured {
        name: name.to_owned(),
        reason: "its URL does not parse".to_owned(),
    })?;
    // IP literals never reach the resolver: check them here. Names are checked by the resolver
    // on the very addresses the connection uses; this early look only gives the clear code.
    check_url_host(&parsed, options.allow_private_addresses)
        .map_err(|_| McpError::AddressRefused(name.to_owned()))?;
    if !options.allow_private_addresses {
        if let Some(url::Host::Domain(host)) = parsed.host() {
            if let Ok(addrs) = tokio::net::lookup_host((host, 0)).await {
                if addrs.into_iter().any(|a| !is_public(a.ip())) {
                    return Err(McpError::AddressRefused(name.to_owned()));
                }
            }
        }
    }
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned())
        .custom_headers(headers.headers.clone())
        .max_json_response_size(options.max_response_bytes)
        .max_sse_event_size(options.max_response_bytes)
        .max_error_response_size(4096);
    config.retry_config = Arc::new(NeverRetry::default());
    let transport = StreamableHttpClientTransport::with_client(http.clone(), config);
    let info = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("katachi-relay", env!("CARGO_PKG_VERSION")),
    );
    let timeout = McpError::Timeout {
        name: name.to_owned(),
        secs: options.connect_timeout.as_secs(),
    };
    let service = tokio::time::timeout(options.connect_timeout, info.serve(transport))
        .await
        .map_err(|_| timeout)?
        .map_err(|e| classify(&e, name))?;
    Ok(Session {
        service,
        name,
        headers,
        options,
    })
}

impl Session<'_> {
    /// Every tool of the server (all pages).
    ///
    /// # Errors
    /// [`McpError::Timeout`], [`McpError::ServerError`], …
    pub(super) async fn list_tools(self) -> Result<Vec<Tool>, McpError> {
        let listed =
            tokio::time::timeout(self.options.list_timeout, self.service.list_all_tools()).await;
        let result = match listed {
            Err(_) => Err(McpError::Timeout {
                name: self.name.to_owned(),
                secs: self.options.list_timeout.as_secs(),
            }),
            Ok(Err(e)) => Err(self.service_error(&e, None)),
            Ok(Ok(tools)) => Ok(tools),
        };
        self.close();
        result
    }

    /// Calls `tool` with `arguments` (a JSON object).
    ///
    /// # Errors
    /// [`McpError::ToolFailed`] (the server's JSON-RPC error), [`McpError::Timeout`], …
    pub(super) async fn call_tool(
        self,
        tool: &str,
        arguments: serde_json::Map<String, serde_json::Value>,
    ) -> Result<rmcp::model::CallToolResult, McpError> {
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments);
        let called =
            tokio::time::timeout(self.options.call_timeout, self.service.call_tool(params)).await;
        let result = match called {
            Err(_) => Err(self.timeout()),
            Ok(Err(e)) => Err(self.service_error(&e, Some(tool))),
            Ok(Ok(result)) => Ok(result),
        };
        self.close();
        result
    }

    fn timeout(&self) -> McpError {
        McpError::Timeout {
            name: self.name.to_owned(),
            secs: self.options.call_timeout.as_secs(),
        }
    }

    /// A failed request: the server's own refusal of a tool call, or a transport failure.
    fn service_error(&self, e: &ServiceError, tool: Option<&str>) -> McpError {
        match (e, tool) {
            (ServiceError::McpError(data), Some(tool)) => {
                let message: String = self
                    .headers
                    .redact_text(&data.message)
                    .chars()
                    .take(MAX_MESSAGE_CHARS)
                    .collect();
                McpError::ToolFailed {
                    name: self.name.to_owned(),
                    tool: tool.to_owned(),
                    message,
                }
            }
            (ServiceError::McpError(data), None) => McpError::ServerError {
                name: self.name.to_owned(),
                reason: format!(
                    "it refused to list its tools (JSON-RPC error {})",
                    data.code.0
                ),
            },
            (ServiceError::Timeout { .. }, _) => self.timeout(),
            _ => classify(e, self.name),
        }
    }

    /// Ends the session in the background (the answer does not wait for the server's goodbye).
    fn close(self) {
        let service = self.service;
        tokio::spawn(async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), service.cancel()).await;
        });
    }
}

/// Sorts a connection or transport failure by what the user can do about it, in the relay's own
/// words (an upstream error's text is never passed on: it could quote the request).
fn classify(e: &(dyn StdError + 'static), name: &str) -> McpError {
    let server_error = |reason: &str| McpError::ServerError {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<AddressRefused>().is_some() {
            return McpError::AddressRefused(name.to_owned());
        }
        if let Some(r) = err.downcast_ref::<reqwest013::Error>() {
            if let Some(found) = classify_reqwest(r, name) {
                return found;
            }
        }
        if let Some(h) = err.downcast_ref::<StreamableHttpError<reqwest013::Error>>() {
            if let Some(found) = classify_http(h, name) {
                return found;
            }
        }
        // rmcp keeps the transport's error in fields that are not `source()`: look inside
        let transport = match err.downcast_ref::<ClientInitializeError>() {
            Some(ClientInitializeError::TransportError { error, .. }) => Some(error),
            _ => err.downcast_ref::<DynamicTransportError>(),
        };
        if let Some(t) = transport {
            let inner: &(dyn StdError + 'static) = t.error.as_ref();
            if let Some(h) = inner.downcast_ref::<StreamableHttpError<reqwest013::Error>>() {
                if let Some(found) = classify_http(h, name) {
                    return found;
                }
            }
            if let Some(WorkerQuitReason::Fatal { error, .. }) =
                inner.downcast_ref::<WorkerQuitReason<StreamableHttpError<reqwest013::Error>>>()
            {
                if let Some(found) = classify_http(error, name) {
                    return found;
                }
            }
        }
        if let Some(WorkerQuitReason::Fatal { error, .. }) =
            err.downcast_ref::<WorkerQuitReason<StreamableHttpError<reqwest013::Error>>>()
        {
            if let Some(found) = classify_http(error, name) {
                return found;
            }
        }
        next = err.source();
    }
    server_error("the MCP handshake failed")
}

fn classify_http(e: &StreamableHttpError<reqwest013::Error>, name: &str) -> Option<McpError> {
    let server_error = |reason: String| McpError::ServerError {
        name: name.to_owned(),
        reason,
    };
    Some(match e {
        StreamableHttpError::Client(r) => return classify_reqwest(r, name),
        StreamableHttpError::AuthRequired(_) | StreamableHttpError::InsufficientScope(_) => {
            server_error("it refused the credentials (HTTP 401/403); check the variables set for it on the relay's MCP servers page".to_owned())
        }
        StreamableHttpError::HttpStatus(s) => server_error(format!("it answered HTTP {}", s.status)),
        StreamableHttpError::ResponseBodyTooLarge { max_size } => {
            server_error(format!("its answer is larger than {max_size} bytes"))
        }
        StreamableHttpError::UnexpectedContentType(_)
        | StreamableHttpError::UnexpectedServerResponse(_)
        | StreamableHttpError::Deserialize(_) => {
            server_error("its answer is not MCP (is the URL the server's MCP endpoint?)".to_owned())
        }
        _ => return None,
    })
}

fn classify_reqwest(e: &reqwest013::Error, name: &str) -> Option<McpError> {
    let mut next: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(err) = next {
        if err.downcast_ref::<AddressRefused>().is_some() {
            return Some(McpError::AddressRefused(name.to_owned()));
        }
        next = err.source();
    }
    // No request timeout is set on the client: a timeout here is the connect timeout.
    if e.is_connect() || e.is_timeout() {
        return Some(McpError::Unreachable(name.to_owned()));
    }
    if let Some(status) = e.status() {
        return Some(McpError::ServerError {
            name: name.to_owned(),
            reason: format!("it answered HTTP {}", status.as_u16()),
        });
    }
    if e.is_request() {
        return Some(McpError::Unreachable(name.to_owned()));
    }
    None
}
