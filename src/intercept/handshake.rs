//! The two handshakes of an intercepted tunnel: the proxy's own with the
//! origin (verified, on the dialled socket) and the client's with a minted
//! leaf (its ClientHello replayed).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello as RustlsHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;

use super::rewind::Rewind;
use super::Interceptor;
use crate::outcome::{DetectionReason, InterceptProblem};
use crate::stream::ClientStream;
use crate::tunnel::detect::{classify, Classified, ClientHello, Protocol};
use crate::tunnel::verify;

/// Reads until the client's first bytes are a whole ClientHello; anything
/// else is refused (the policy intercepts TLS only).
pub(super) async fn read_hello(
    client: &mut ClientStream,
    mut held: Vec<u8>,
    max: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, Box<ClientHello>), (Option<Protocol>, DetectionReason)> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match classify(&held) {
            Classified::Done(Protocol::Tls(h)) => return Ok((held, h)),
            Classified::Done(other) => {
                return Err((Some(other), DetectionReason::ProtocolNotAllowed))
            }
            Classified::NeedMore(_) if held.len() >= max => {
                return Err((None, DetectionReason::ProtocolNotAllowed))
            }
            Classified::NeedMore(_) => {}
        }
        let mut limited = (&mut *client).take((max - held.len()) as u64);
        match tokio::time::timeout_at(deadline, limited.read_buf(&mut held)).await {
            Err(_) => return Err((None, DetectionReason::Timeout)),
            Ok(Ok(0)) => return Err((None, DetectionReason::ClientClosed)),
            Ok(Err(_)) => return Err((None, DetectionReason::ClientError)),
            Ok(Ok(_)) => {}
        }
    }
}

pub(super) type OriginTls = tokio_rustls::client::TlsStream<TcpStream>;

/// The proxy's own handshake with the origin, with `upstream`'s ALPN; its
/// leaf on success.
pub(super) async fn connect_origin(
    upstream: &Arc<rustls::ClientConfig>,
    server: TcpStream,
    name: &str,
    timeout: Duration,
) -> Result<(OriginTls, Option<CertificateDer<'static>>), DetectionReason> {
    let server_name = verify::server_name(name).ok_or(DetectionReason::CertInvalid)?;
    let connector = tokio_rustls::TlsConnector::from(upstream.clone());
    match tokio::time::timeout(timeout, connector.connect(server_name, server)).await {
        Err(_) => Err(DetectionReason::ServerTimeout),
        Ok(Err(e)) => {
            let reason = match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                Some(err @ rustls::Error::InvalidCertificate(_)) => verify::reason(err),
                Some(rustls::Error::AlertReceived(_)) => DetectionReason::HandshakeRefused,
                Some(_) => DetectionReason::HandshakeInvalid,
                None => DetectionReason::CheckFailed,
            };
            tracing::info!(name, error = %e, reason = reason.as_str(), "intercepted origin refused");
            Err(reason)
        }
        Ok(Ok(tls)) => {
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned());
            Ok((tls, leaf))
        }
    }
}

/// A resolver that always answers the one minted leaf.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _: RustlsHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

pub(super) type ClientTls = tokio_rustls::server::TlsStream<Rewind<ClientStream>>;

/// Did the TLS session agree on HTTP/2?
pub(super) fn is_h2(alpn: Option<&[u8]>) -> bool {
    alpn == Some(crate::http2::ALPN_H2)
}

/// The client's handshake with the minted leaf, its ClientHello replayed;
/// `h2`: the origin speaks HTTP/2, so `h2` is offered to the client first.
pub(super) async fn accept_client(
    i: &Interceptor,
    h2: bool,
    leaf: Arc<CertifiedKey>,
    client: Rewind<ClientStream>,
    timeout: Duration,
) -> Result<ClientTls, InterceptProblem> {
    let cfg = rustls::ServerConfig::builder_with_provider(i.provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| InterceptProblem::Unavailable)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(leaf)));
    let mut cfg = cfg;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    if h2 {
        cfg.alpn_protocols.insert(0, crate::http2::ALPN_H2.to_vec());
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let Ok(accepted) = tokio::time::timeout(timeout, acceptor.accept(client)).await else {
        tracing::info!("intercepted client's handshake did not finish in time");
        return Err(InterceptProblem::ClientHandshake);
    };
    accepted.map_err(|e| {
        let problem = client_failure(&e);
        tracing::info!(error = %e, reason = problem.as_str(), "intercepted client's handshake failed");
        problem
    })
}

/// Why the client's handshake with the minted leaf failed. The ClientHello
/// was whole and answered, so the proxy's flight — its certificate — went
/// out: a client that then hangs up (EOF, `close_notify`: Node, Java, apt)
/// or sends an alert about the certificate refused it. Anything rustls
/// could not parse or agree on is a failed handshake.
fn client_failure(e: &std::io::Error) -> InterceptProblem {
    use rustls::AlertDescription as A;
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateExpired
            | A::DecryptError
            | A::CloseNotify,
        )) => InterceptProblem::ClientRejectedCertificate,
        Some(_) => InterceptProblem::ClientHandshake,
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            InterceptProblem::ClientRejectedCertificate
        }
        None => InterceptProblem::ClientHandshake,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    #[test]
    fn hanging_up_after_the_certificate_is_a_rejection_garbage_is_not() {
        let alert = |a| Error::new(ErrorKind::InvalidData, rustls::Error::AlertReceived(a));
        let rejected = InterceptProblem::ClientRejectedCertificate;
        for a in [
            rustls::AlertDescription::UnknownCA,
            rustls::AlertDescription::BadCertificate,
            rustls::AlertDescription::CloseNotify,
        ] {
            assert_eq!(client_failure(&alert(a)), rejected);
        }
        let eof = Error::new(ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(client_failure(&eof), rejected);
        let garbage = Error::new(
            ErrorKind::InvalidData,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        assert_eq!(client_failure(&garbage), InterceptProblem::ClientHandshake);
        let version = alert(rustls::AlertDescription::ProtocolVersion);
        assert_eq!(client_failure(&version), InterceptProblem::ClientHandshake);
        let reset = Error::new(ErrorKind::ConnectionReset, "reset");
        assert_eq!(client_failure(&reset), InterceptProblem::ClientHandshake);
    }
}
