//! What a `Negotiate` token carries, sans I/O: raw Kerberos, SPNEGO (and its
//! first offered mechanism), or raw NTLMSSP. Only enough DER to route the
//! token; the GSS library does the real parsing. MIT's SPNEGO acceptor rejects
//! NTLM, so NTLM must be recognised here and sent to the NTLM path.

/// 1.3.6.1.5.5.2
const OID_SPNEGO: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// 1.2.840.113554.1.2.2
const OID_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// 1.2.840.48018.1.2.2 (Microsoft's Kerberos OID, sent by Windows)
const OID_MS_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// 1.3.6.1.4.1.311.2.2.10
const OID_NTLM: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];

/// The mechanism a SPNEGO NegTokenInit prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    /// Kerberos 5 (or Microsoft's variant OID of it).
    Kerberos,
    /// NTLMSSP.
    Ntlm,
    /// Anything else.
    Other,
}

/// What a Negotiate token is, from its framing alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A raw Kerberos AP-REQ wrapped in the GSS framing.
    Kerberos,
    /// SPNEGO NegTokenInit, with the client's preferred mechanism.
    Spnego(Mech),
    /// Raw NTLMSSP (Windows without a ticket sends this under Negotiate).
    Ntlm,
    /// None of these: refused without calling GSS.
    Unknown,
}

impl TokenKind {
    /// True when the token is (or prefers) NTLM.
    pub fn is_ntlm(self) -> bool {
        matches!(self, TokenKind::Ntlm | TokenKind::Spnego(Mech::Ntlm))
    }
}

/// Reads one DER TLV: (tag, contents, rest).
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn mech(oid: &[u8]) -> Mech {
    match oid {
        OID_KRB5 | OID_MS_KRB5 => Mech::Kerberos,
        OID_NTLM => Mech::Ntlm,
        _ => Mech::Other,
    }
}

/// Routes a `Negotiate` token.
pub fn inspect(token: &[u8]) -> TokenKind {
    if token.starts_with(b"NTLMSSP\0") {
        return TokenKind::Ntlm;
    }
    // [APPLICATION 0] { thisMech OID, innerToken }
    let Some((0x60, inner, _)) = tlv(token) else {
        return TokenKind::Unknown;
    };
    let Some((0x06, oid, inner_token)) = tlv(inner) else {
        return TokenKind::Unknown;
    };
    match oid {
        OID_KRB5 | OID_MS_KRB5 => TokenKind::Kerberos,
        OID_SPNEGO => TokenKind::Spnego(first_mech(inner_token).unwrap_or(Mech::Other)),
        _ => TokenKind::Unknown,
    }
}

/// NegTokenInit ::= [0] SEQUENCE { mechTypes [0] SEQUENCE OF OID, ... }
fn first_mech(neg: &[u8]) -> Option<Mech> {
    let (0xa0, init, _) = tlv(neg)? else {
        return None;
    };
    let (0x30, seq, _) = tlv(init)? else {
        return None;
    };
    let (0xa0, types, _) = tlv(seq)? else {
        return None;
    };
    let (0x30, list, _) = tlv(types)? else {
        return None;
    };
    let (0x06, oid, _) = tlv(list)? else {
        return None;
    };
    Some(mech(oid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn spnego(first: &[u8], padding: usize) -> Vec<u8> {
        let mut list = der(0x06, first);
        list.extend(der(0x06, OID_KRB5));
        let mut seq = der(0xa0, &der(0x30, &list));
        seq.extend(der(0xa2, &vec![0x04; padding])); // mechToken, any size
        let init = der(0xa0, &der(0x30, &seq));
        let mut inner = der(0x06, OID_SPNEGO);
        inner.extend(init);
        der(0x60, &inner)
    }

    #[test]
    fn routes_tokens() {
        assert_eq!(
            inspect(&spnego(OID_KRB5, 10)),
            TokenKind::Spnego(Mech::Kerberos)
        );
        assert_eq!(
            inspect(&spnego(OID_MS_KRB5, 700)),
            TokenKind::Spnego(Mech::Kerberos)
        );
        assert_eq!(
            inspect(&spnego(OID_NTLM, 40)),
            TokenKind::Spnego(Mech::Ntlm)
        );
        assert!(inspect(&spnego(OID_NTLM, 40)).is_ntlm());
        let mut krb = der(0x06, OID_KRB5);
        krb.extend_from_slice(&[0x01, 0x00, 0x6e, 0x00]);
        assert_eq!(inspect(&der(0x60, &krb)), TokenKind::Kerberos);
        assert_eq!(inspect(b"NTLMSSP\0\x01\x00\x00\x00"), TokenKind::Ntlm);
        assert_eq!(inspect(b""), TokenKind::Unknown);
        assert_eq!(inspect(b"\x60\x84\xff\xff\xff\xff"), TokenKind::Unknown);
        assert_eq!(
            inspect(&der(0x60, &der(0x06, &[1, 2, 3]))),
            TokenKind::Unknown
        );
    }

    #[test]
    fn every_prefix_and_mutation_is_safe() {
        let t = spnego(OID_KRB5, 300);
        for cut in 0..t.len() {
            assert_ne!(
                inspect(&t[..cut]),
                TokenKind::Spnego(Mech::Ntlm),
                "cut {cut}"
            );
        }
        for i in 0..t.len() {
            for v in [0x00, 0x7f, 0x80, 0x84, 0xff] {
                let mut m = t.clone();
                m[i] = v;
                let _ = inspect(&m);
            }
        }
    }
}
