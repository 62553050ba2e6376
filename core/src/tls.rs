//! TLS as a layer of a connection (DESIGN.md): rustls with the ring
//! provider, sans-IO, driven by the worker that owns the connection.
//!
//! Protocol (what [`Connection`] does when it has a [`Tls`]):
//!
//! 1. [`Connection::fill`] first writes the records TLS owes (a handshake
//!    message, an alert), then reads ciphertext from the socket (one read
//!    syscall, the usual readiness rules), hands it to rustls, and moves the
//!    plaintext into the same input buffer a plain connection reads into.
//!    So every read of the socket API works unchanged, and a read is what
//!    drives the handshake (or [`Connection::advance_handshake`], which the
//!    owner calls on readiness while the handshake runs, so that it
//!    progresses when no session reads).
//! 2. [`Connection::flush`] moves the output buffer's plaintext into rustls,
//!    which encrypts it into records (buffering at most [`BUFFER_LIMIT`]
//!    before the handshake ends), and writes the records. Output made during
//!    the handshake is sent once it ends.
//! 3. A TLS error (a bad certificate, bytes that are not TLS, an alert from
//!    the peer) sends rustls's alert, marks the connection failed and keeps
//!    its text for [`Connection::failure`] (`"tls: ..."`); only that
//!    connection is lost.
//! 4. The handshake has a deadline ([`Tls::server`], [`Tls::client`]); the
//!    owner arms a timer for it and calls [`Connection::expire_handshake`]
//!    when it fires.
//! 5. Closing: [`Connection::close_output`] asks for a `close_notify` after
//!    the rest of the output; `flush` sends it.
//!
//! Configurations are built once per distinct set of options and shared
//! ([`server_config`], [`client_config`]); the system's trust roots are read
//! once per process from its CA bundle (`SSL_CERT_FILE`, or the usual
//! places of Debian, Fedora and Alpine).

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

pub use rustls::{ClientConfig, ServerConfig};

use crate::connection::{Connection, Fill};

/// Plaintext rustls buffers before the handshake ends, and records it
/// queues after it: past this the output waits in the connection's own
/// buffer (where the high-water mark sees it).
pub const BUFFER_LIMIT: usize = 64 * 1024;

/// A handshake's deadline when the caller gives none (nginx's
/// `ssl_handshake_timeout` is 60 s; a peer that sends nothing for 10 s in
/// the middle of a handshake is not going to finish it).
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;

/// Where the system's CA bundle may be, first found wins (after
/// `SSL_CERT_FILE`).
const CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Distinct configurations kept (they come from scripts' options, which are
/// few); past it the cache starts again.
const CACHE_LIMIT: usize = 64;

/// Configurations by the options they were made from.
type Cache<K, V> = Mutex<Option<HashMap<K, Arc<V>>>>;

/// Why a configuration or a session could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls: cannot read the {what} file {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: io::Error,
    },
    #[error("tls: no certificate in {0}")]
    NoCertificate(String),
    #[error("tls: no private key in {0}")]
    NoKey(String),
    #[error("tls: {what} in {origin} is not valid PEM: {message}")]
    Pem {
        what: &'static str,
        origin: String,
        message: String,
    },
    #[error("tls: no trusted certificate in {0}")]
    NoRoots(String),
    #[error("tls: the system has no CA bundle (looked at SSL_CERT_FILE and {0}); pass ca=")]
    NoSystemRoots(String),
    #[error("tls: '{0}' is not a valid server name")]
    ServerName(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// PEM text, or the path of a PEM file: text is told by its `-----BEGIN`.
/// Returns the bytes and what to call them in messages.
fn pem_source(source: &str, what: &'static str) -> Result<(Vec<u8>, String), TlsError> {
    if source.contains("-----BEGIN") {
        return Ok((source.as_bytes().to_vec(), format!("the {what} text")));
    }
    std::fs::read(source)
        .map(|bytes| (bytes, source.to_string()))
        .map_err(|error| TlsError::Read {
            what,
            path: source.to_string(),
            source: error,
        })
}

fn certificates(
    source: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let (bytes, origin) = pem_source(source, what)?;
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what,
            origin: origin.clone(),
            message: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate(origin));
    }
    Ok(certificates)
}

/// A server configuration from a certificate chain and its private key
/// (each a PEM file's path or PEM text), shared by every listener that
/// names the same two.
pub fn server_config(cert: &str, key: &str) -> Result<Arc<ServerConfig>, TlsError> {
    static CACHE: Cache<(String, String), ServerConfig> = Mutex::new(None);
    let name = (cert.to_string(), key.to_string());
    if let Some(config) = cached(&CACHE, &name) {
        return Ok(config);
    }
    let chain = certificates(cert, "certificate")?;
    let (bytes, origin) = pem_source(key, "key")?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey(origin.clone()),
        other => TlsError::Pem {
            what: "key",
            origin: origin.clone(),
            message: other.to_string(),
        },
    })?;
    let config = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?,
    );
    remember(&CACHE, name, &config);
    Ok(config)
}

/// A client configuration: with `verify`, the server's certificate must
/// chain to `ca` (a PEM file's path or PEM text) or, without it, to the
/// system's trust roots; without `verify` any certificate is accepted (the
/// handshake's signatures are still checked).
pub fn client_config(verify: bool, ca: Option<&str>) -> Result<Arc<ClientConfig>, TlsError> {
    static CACHE: Cache<(bool, Option<String>), ClientConfig> = Mutex::new(None);
    let name = (verify, ca.map(str::to_string));
    if let Some(config) = cached(&CACHE, &name) {
        return Ok(config);
    }
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = if verify {
        let roots = match ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certificates(ca, "ca")?);
                if added == 0 {
                    return Err(TlsError::NoRoots(ca.to_string()));
                }
                Arc::new(roots)
            }
            None => system_roots()?,
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth()
    };
    let config = Arc::new(config);
    remember(&CACHE, name, &config);
    Ok(config)
}

fn cached<K: std::hash::Hash + Eq, V>(
    cache: &Mutex<Option<HashMap<K, Arc<V>>>>,
    key: &K,
) -> Option<Arc<V>> {
    let cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache.as_ref()?.get(key).cloned()
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Cache<K, V>, key: K, value: &Arc<V>) {
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if map.len() >= CACHE_LIMIT {
        map.clear();
    }
    map.insert(key, value.clone());
}

/// The system's trust roots, read once.
fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let from_environment = std::env::var("SSL_CERT_FILE").ok();
            let candidates = from_environment
                .iter()
                .map(String::as_str)
                .chain(CA_BUNDLES.iter().copied());
            for path in candidates {
                let Ok(bytes) = std::fs::read(path) else {
                    continue;
                };
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(
                    CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok),
                );
                if !roots.is_empty() {
                    return Ok(Arc::new(roots));
                }
            }
            Err(CA_BUNDLES.join(", "))
        })
        .clone()
        .map_err(TlsError::NoSystemRoots)
}

/// `verify = false`: any certificate, any name. The handshake's signatures
/// are still checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS state of one connection.
pub struct Tls {
    session: rustls::Connection,
    /// Why it failed (`"tls: ..."`).
    failure: Option<String>,
    /// The end of the handshake, in [`crate::now_ms`] time.
    deadline: u64,
    /// `close_notify` goes out after the rest of the output.
    closing: bool,
    close_sent: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("handshaking", &self.session.is_handshaking())
            .field("failure", &self.failure)
            .finish()
    }
}

impl Tls {
    /// The server side of a handshake that must end within `timeout_ms`.
    pub fn server(config: Arc<ServerConfig>, timeout_ms: u64) -> Result<Tls, TlsError> {
        let session = rustls::ServerConnection::new(config)?;
        Ok(Tls::new(rustls::Connection::Server(session), timeout_ms))
    }

    /// The client side, for `server_name` (a DNS name or an IP address).
    pub fn client(
        config: Arc<ClientConfig>,
        server_name: &str,
        timeout_ms: u64,
    ) -> Result<Tls, TlsError> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| TlsError::ServerName(server_name.to_string()))?;
        let session = rustls::ClientConnection::new(config, name)?;
        Ok(Tls::new(rustls::Connection::Client(session), timeout_ms))
    }

    fn new(mut session: rustls::Connection, timeout_ms: u64) -> Tls {
        session.set_buffer_limit(Some(BUFFER_LIMIT));
        Tls {
            session,
            failure: None,
            deadline: crate::now_ms().saturating_add(timeout_ms),
            closing: false,
            close_sent: false,
        }
    }

    /// The time the handshake must have ended by.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }
}

/// How a socket write of records ended.
enum Sent {
    /// Everything owed is written.
    All,
    /// The socket is full: the rest waits for writability.
    Blocked,
    Failed(io::Error),
}

impl Connection {
    /// Starts TLS on a connection nothing was read from or written to yet.
    pub fn start_tls(&mut self, tls: Tls) {
        self.tls = Some(Box::new(tls));
    }

    /// Whether this connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS handshake is not finished yet (never true on a plain
    /// connection).
    pub fn handshaking(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.session.is_handshaking())
    }

    /// Why the connection failed, when there is more to say than "reset"
    /// (a TLS error: `"tls: ..."`).
    pub fn failure(&self) -> Option<&str> {
        self.tls.as_ref()?.failure.as_deref()
    }

    /// Something is waiting to be written: output, or records TLS owes.
    pub fn wants_flush(&self) -> bool {
        !self.output.is_empty()
            || self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.session.wants_write())
    }

    /// Step 1 without a reader: while the handshake runs, readiness moves
    /// it on (what arrives after it stays buffered for the next read).
    pub fn advance_handshake(&mut self) {
        if self.readable && !self.failed && !self.eof && self.handshaking() {
            let _ = self.fill(1);
        }
    }

    /// Step 4: fails the connection if its handshake is past `deadline`
    /// (ms) and not done; true if it did.
    pub fn expire_handshake(&mut self, now: u64) -> bool {
        let expired = !self.failed
            && self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.session.is_handshaking() && tls.deadline <= now);
        if expired {
            self.fail_tls("tls: handshake timed out".to_string());
            let _ = self.stream.shutdown(std::net::Shutdown::Both);
        }
        expired
    }

    /// Step 5: a `close_notify` goes out after the rest of the output.
    pub fn close_output(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.closing = true;
        }
    }

    fn fail_tls(&mut self, text: String) {
        if let Some(tls) = self.tls.as_mut() {
            tls.failure.get_or_insert(text);
        }
        self.failed = true;
        self.readable = false;
    }

    /// Writes the records TLS owes, as far as the socket takes them; a
    /// failed write fails the connection.
    fn send_records(&mut self) -> Sent {
        let Some(tls) = self.tls.as_mut() else {
            return Sent::All;
        };
        while tls.session.wants_write() {
            let error = match tls.session.write_tls(&mut self.stream) {
                Ok(0) => io::ErrorKind::WriteZero.into(),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.writable = false;
                    return Sent::Blocked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            self.failed = true;
            self.readable = false;
            return Sent::Failed(error);
        }
        Sent::All
    }

    /// Step 1: `scratch` is the thread's read buffer. The caller checked
    /// `failed` and `eof`.
    pub(crate) fn fill_tls(&mut self, scratch: &mut [u8]) -> Fill {
        if let Sent::Failed(_) = self.send_records() {
            return Fill::Reset;
        }
        let read = match self.read_socket(scratch) {
            Ok(n) => n,
            Err(fill) => return fill,
        };
        let before = self.input.len();
        if let Err(text) = self.decrypt(&scratch[..read]) {
            // The alert rustls queued for the peer, if the socket takes it.
            let _ = self.send_records();
            self.fail_tls(text);
            return Fill::Reset;
        }
        if let Sent::Failed(_) = self.send_records() {
            return Fill::Reset;
        }
        let plaintext = self.input.len() - before;
        if read == 0 {
            self.eof = true;
        }
        if self.eof {
            self.readable = false;
            return if plaintext > 0 {
                Fill::Data(plaintext)
            } else {
                Fill::Closed
            };
        }
        if read < scratch.len() && !self.hangup {
            self.readable = false;
        }
        Fill::Data(plaintext)
    }

    /// Hands `records` (empty: the socket's end of file) to rustls and
    /// moves the plaintext into the input buffer; sets `eof` at the peer's
    /// `close_notify` or the socket's end. Err: the text of a TLS error.
    fn decrypt(&mut self, mut records: &[u8]) -> Result<(), String> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        let at_end = records.is_empty();
        loop {
            let took = tls
                .session
                .read_tls(&mut records)
                .map_err(|e| format!("tls: {e}"))?;
            // rustls refuses more than it can hold with an error, so taking
            // nothing of what is left would be a bug: never spin on it.
            if took == 0 && !at_end {
                return Err("tls: the record layer took no input".to_string());
            }
            if let Err(e) = tls.session.process_new_packets() {
                return Err(format!("tls: {e}"));
            }
            let mut reader = tls.session.reader();
            loop {
                match reader.fill_buf() {
                    Ok([]) => {
                        // The peer's close_notify.
                        self.eof = true;
                        break;
                    }
                    Ok(plaintext) => {
                        let len = plaintext.len();
                        self.input.extend(plaintext);
                        reader.consume(len);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The socket ended without close_notify: an end all
                    // the same (as most clients end HTTPS).
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        self.eof = true;
                        break;
                    }
                    Err(e) => return Err(format!("tls: {e}")),
                }
            }
            if records.is_empty() {
                return Ok(());
            }
        }
    }

    /// Step 2. The caller checked `failed`.
    pub(crate) fn flush_tls(&mut self) -> io::Result<usize> {
        while let Some(tls) = self.tls.as_mut() {
            let mut took = 0;
            if !self.output.is_empty() {
                took = tls.session.writer().write(self.output.as_slice())?;
                self.output.consume(took);
            }
            if self.output.is_empty() && tls.closing && !tls.close_sent {
                tls.session.send_close_notify();
                tls.close_sent = true;
            }
            match self.send_records() {
                Sent::Failed(e) => return Err(e),
                Sent::Blocked => break,
                Sent::All if self.output.is_empty() || took == 0 => break,
                Sent::All => {}
            }
        }
        Ok(self.output.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_and_key_sources_that_hold_nothing_are_refused_by_name() {
        match server_config("/no/such/cert.pem", "/no/such/key.pem") {
            Err(TlsError::Read { what, path, .. }) => {
                assert_eq!((what, path.as_str()), ("certificate", "/no/such/cert.pem"))
            }
            other => panic!("{other:?}"),
        }
        let empty = "-----BEGIN NOTHING-----\n-----END NOTHING-----\n";
        match server_config(empty, empty) {
            Err(TlsError::NoCertificate(origin)) => assert_eq!(origin, "the certificate text"),
            other => panic!("{other:?}"),
        }
        match client_config(true, Some("/dev/null")) {
            Err(error) => assert!(error.to_string().contains("/dev/null"), "{error}"),
            Ok(_) => panic!("a CA file without certificates was accepted"),
        }
        let broken = "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            server_config(broken, broken),
            Err(TlsError::Pem {
                what: "certificate",
                ..
            })
        ));
    }

    #[test]
    fn configurations_are_made_once_per_set_of_options() {
        let first = client_config(false, None).expect("verify off needs no roots");
        let again = client_config(false, None).unwrap();
        assert!(Arc::ptr_eq(&first, &again));
    }

    #[test]
    fn a_server_name_must_be_a_name_or_an_address() {
        let config = client_config(false, None).unwrap();
        assert!(matches!(
            Tls::client(config.clone(), "not a name!", 1000),
            Err(TlsError::ServerName(_))
        ));
        let tls = Tls::client(config.clone(), "127.0.0.1", 1000).unwrap();
        assert!(tls.session.is_handshaking() && tls.session.wants_write());
        assert!(Tls::client(config, "example.com", 1000).is_ok());
    }
}
