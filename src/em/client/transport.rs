//! The connections requests travel on: HTTP/1.1 through hyper's connection API, over TCP or
//! over TLS (rustls), with a pool of idle connections to the one server.
//!
//! The base URL is taken apart once, when the client is built ([`Origin`]): a request names
//! only its path, and nothing parses a URL per request. reqwest, used here before, parsed every
//! request's URL again in its redirect layer (which was off) and built a connection key per
//! request; hyper's own connection API does neither.
//!
//! What a failure means for a retry is decided here, where it is known: a failure to connect
//! (TCP, or the TLS handshake) means the request never left, while a failure once it was handed
//! to a connection means it may have reached the server. A pooled connection the server closed
//! while it sat idle gives the request back unsent (hyper's `try_send_request`), and it goes
//! out on another connection; that is the only resend here, and it is safe because nothing was
//! written.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::HeaderValue;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::either::Either;

use crate::em::EmError;

/// How long a connection may sit idle in the pool before it is closed rather than reused: less
/// than servers commonly keep an idle connection open (HTTP.sys, which serves EM, 120 s), so a
/// connection is seldom taken just as the server closes it. reqwest's default, kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most idle connections kept. More requests in flight than this still get connections;
/// the extra ones are closed when they finish.
const MAX_IDLE: usize = 256;

/// The server's address, taken from the base URL once.
#[derive(Debug)]
pub(super) struct Origin {
    host: url::Host<String>,
    port: u16,
    /// The `Host` header: the URL's host, with its port when the URL names one.
    authority: HeaderValue,
    /// The base URL's path without its trailing `/`, e.g. `/api`; already percent-encoded.
    base_path: String,
    /// The TLS name to verify the server's certificate against, for `https`.
    server_name: Option<ServerName<'static>>,
}

impl Origin {
    /// The parts of `url`, an `http` or `https` URL without credentials.
    pub(super) fn new(url: &url::Url) -> Result<Origin, EmError> {
        let setup = |what: &str| EmError::Setup(format!("the server URL {what}"));
        let host = url.host().ok_or_else(|| setup("names no host"))?.to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| setup("names no port"))?;
        // `host_str` writes an IPv6 address in brackets, as the header needs it.
        let host_text = url.host_str().ok_or_else(|| setup("names no host"))?;
        let authority = match url.port() {
            Some(port) => format!("{host_text}:{port}"),
            None => host_text.to_string(),
        };
        let authority =
            HeaderValue::try_from(authority).map_err(|_| setup("has an unusable host"))?;
        let server_name = match url.scheme() {
            "https" => Some(
                match &host {
                    url::Host::Domain(d) => ServerName::try_from(d.clone()),
                    url::Host::Ipv4(a) => Ok(ServerName::from(std::net::IpAddr::from(*a))),
                    url::Host::Ipv6(a) => Ok(ServerName::from(std::net::IpAddr::from(*a))),
                }
                .map_err(|_| setup("has a host that is no TLS server name"))?,
            ),
            _ => None,
        };
        Ok(Origin {
            host,
            port,
            authority,
            base_path: url.path().trim_end_matches('/').to_string(),
            server_name,
        })
    }

    /// The path and query a request for `path` (below the base URL, with any query) asks for,
    /// as it goes on the request line and into the audit log, e.g. `/api/security/accounts`.
    pub(super) fn target(&self, path: &str) -> String {
        let mut target = String::with_capacity(self.base_path.len() + path.len());
        target.push_str(&self.base_path);
        target.push_str(path);
        target
    }

    /// The `Host` header's value.
    pub(super) fn authority(&self) -> &HeaderValue {
        &self.authority
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum TransportError {
    /// No connection could be made (name lookup, TCP, the TLS handshake, or the time for them
    /// ran out): the request never left.
    #[error("cannot connect")]
    Connect(#[source] io::Error),
    /// A new connection failed before the request was written to it, and gave it back: the
    /// request never left.
    #[error("the request was not sent")]
    NotSent(#[source] hyper::Error),
    /// The connection failed once the request was handed to it: it may have reached the server.
    #[error("the connection failed")]
    Exchange(#[source] hyper::Error),
}

/// A connection of the pool, lent for one request. [`Lent::give_back`] returns it once its
/// answer has been read whole; dropped otherwise, the connection closes, since the rest of an
/// unread answer would be read as the next one's.
pub(super) struct Lent {
    sender: http1::SendRequest<Full<Bytes>>,
    pool: Arc<Pool>,
}

impl Lent {
    /// Puts the connection back among the idle ones.
    pub(super) fn give_back(self) {
        self.pool.put(self.sender);
    }
}

#[derive(Default)]
struct Pool {
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<(http1::SendRequest<Full<Bytes>>, Instant)>>,
}

impl Pool {
    fn take(&self) -> Option<http1::SendRequest<Full<Bytes>>> {
        let mut idle = self
            .idle
            .lock()
            .expect("the pool lock is never held across a panic");
        let oldest = Instant::now().checked_sub(IDLE_TIMEOUT);
        // The oldest are first: those past the idle time are closed by dropping them.
        if let Some(oldest) = oldest {
            let stale = idle.iter().take_while(|(_, at)| *at < oldest).count();
            idle.drain(..stale);
        }
        while let Some((sender, _)) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, sender: http1::SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self
            .idle
            .lock()
            .expect("the pool lock is never held across a panic");
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }
}

/// The client's connections to its one server.
pub(super) struct Transport {
    origin: Origin,
    tls: Option<tokio_rustls::TlsConnector>,
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// Connections to `origin`, with TLS configured by `tls` when the origin is `https`.
    pub(super) fn new(origin: Origin, tls: rustls::ClientConfig) -> Transport {
        let tls = origin
            .server_name
            .is_some()
            .then(|| tokio_rustls::TlsConnector::from(Arc::new(tls)));
        Transport {
            origin,
            tls,
            pool: Arc::default(),
        }
    }

    /// Where the requests go.
    pub(super) fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Sends `request` on an idle connection or a new one, connecting by `deadline`, and
    /// answers the response (its head read, its body not) with the connection it came on.
    pub(super) async fn send(
        &self,
        mut request: http::Request<Full<Bytes>>,
        deadline: Instant,
    ) -> Result<(http::Response<Incoming>, Lent), TransportError> {
        loop {
            let (mut sender, pooled) = match self.pool.take() {
                Some(sender) => (sender, true),
                None => (self.connect(deadline).await?, false),
            };
            // An idle connection the server has closed says so here, or gives the request back
            // from `try_send_request` below: either way it never left, and another connection
            // takes it.
            if let Err(e) = sender.ready().await {
                if pooled {
                    continue;
                }
                return Err(TransportError::NotSent(e));
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let lent = Lent {
                        sender,
                        pool: self.pool.clone(),
                    };
                    return Ok((response, lent));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if pooled => request = unsent,
                    Some(_) => return Err(TransportError::NotSent(e.into_error())),
                    None => return Err(TransportError::Exchange(e.into_error())),
                },
            }
        }
    }

    /// A new connection, its TCP and TLS set up by `deadline`.
    async fn connect(
        &self,
        deadline: Instant,
    ) -> Result<http1::SendRequest<Full<Bytes>>, TransportError> {
        let stream = tokio::time::timeout_at(deadline, self.open())
            .await
            .map_err(|_| {
                TransportError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was not set up within the timeout",
                ))
            })?
            .map_err(TransportError::Connect)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(TransportError::NotSent)?;
        // The connection's reads and writes run beside the requests; it ends when the server
        // closes it or the last sender for it is dropped.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("an HTTP connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// A TCP connection to the origin, wrapped in TLS for `https`.
    async fn open(&self) -> io::Result<Stream> {
        let port = self.origin.port;
        let tcp = match &self.origin.host {
            url::Host::Domain(name) => TcpStream::connect((name.as_str(), port)).await?,
            url::Host::Ipv4(a) => TcpStream::connect((*a, port)).await?,
            url::Host::Ipv6(a) => TcpStream::connect((*a, port)).await?,
        };
        // Requests are small and each waits for its answer: Nagle's delay would only add
        // latency.
        tcp.set_nodelay(true)?;
        match (&self.tls, &self.origin.server_name) {
            (Some(tls), Some(name)) => {
                let stream = tls.connect(name.clone(), tcp).await?;
                Ok(Either::Right(Box::new(stream)))
            }
            _ => Ok(Either::Left(tcp)),
        }
    }
}

/// A connection's byte stream: plain TCP, or TLS over it.
type Stream = Either<TcpStream, Box<tokio_rustls::client::TlsStream<TcpStream>>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_taken_apart_once() {
        let origin =
            Origin::new(&url::Url::parse("https://em.example.com:9398/api/").unwrap()).unwrap();
        assert_eq!(origin.authority(), "em.example.com:9398");
        assert_eq!(origin.port, 9398);
        assert_eq!(
            origin.target("/security/accounts?format=Entity"),
            "/api/security/accounts?format=Entity"
        );
        assert!(origin.server_name.is_some());

        let plain = Origin::new(&url::Url::parse("http://[::1]/").unwrap()).unwrap();
        assert_eq!(plain.authority(), "[::1]");
        assert_eq!(plain.port, 80);
        assert_eq!(plain.target("/"), "/");
        assert!(plain.server_name.is_none());

        let ip = Origin::new(&url::Url::parse("https://127.0.0.1:9398/a%20b").unwrap()).unwrap();
        assert_eq!(ip.target("/x"), "/a%20b/x");
        assert!(ip.server_name.is_some());
    }
}
