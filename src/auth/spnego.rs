//! What a `Negotiate` token carries, sans I/O: raw Kerberos, SPNEGO (and its
//! first offered mechanism), or raw NTLMSSP. Only enough DER to route the
//! token; the GSS library does the real parsing. MIT's SPNEGO acceptor rejects
//! NTLM, so NTLM must be recognised here and sent to the NTLM path.
//!
//! Windows clients without a ticket (and curl with gss-ntlmssp) send NTLM
//! *inside* SPNEGO: the type 1 as the NegTokenInit's optimistic mechToken, the
//! type 3 as a NegTokenResp's responseToken. [`ntlm_inside`] takes the NTLM
//! message out and [`wrap_challenge`] puts the helper's type 2 into the
//! NegTokenResp the client expects (RFC 4178 §4.2.2).
//!
//! The client may add a mechListMIC to its type 3, which needs the NTLM
//! session key to check; the Samba helper does not give it to us, so it is
//! not checked. It protects the mechanism list against a downgrade, and NTLM
//! is accepted here in its own right (raw, or under `NTLM`), so nothing is
//! lost by ignoring it; we send no MIC of our own.

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

/// The NTLMSSP message a SPNEGO token carries: the optimistic mechToken of a
/// NegTokenInit that offers NTLM first, or the responseToken of a
/// NegTokenResp (the client's type 3). `None` for anything else (Kerberos
/// inside SPNEGO included).
pub fn ntlm_inside(token: &[u8]) -> Option<&[u8]> {
    let inner = match tlv(token)? {
        // NegTokenInit, in its GSS framing: [APPLICATION 0] { OID, [0] ... }
        (0x60, framed, _) => {
            let (0x06, OID_SPNEGO, init) = tlv(framed)? else {
                return None;
            };
            if first_mech(init)? != Mech::Ntlm {
                return None;
            }
            let (0xa0, init, _) = tlv(init)? else {
                return None;
            };
            field(init, 0xa2)?
        }
        // NegTokenResp ::= [1] SEQUENCE { negState [0], supportedMech [1],
        //                                  responseToken [2], mechListMIC [3] }
        (0xa1, resp, _) => field(resp, 0xa2)?,
        _ => return None,
    };
    let (0x04, message, _) = tlv(inner)? else {
        return None;
    };
    message.starts_with(b"NTLMSSP\0").then_some(message)
}

/// The context-tagged field `tag` of a DER SEQUENCE (fields in any order).
fn field(seq: &[u8], tag: u8) -> Option<&[u8]> {
    let (0x30, mut fields, _) = tlv(seq)? else {
        return None;
    };
    while !fields.is_empty() {
        let (t, content, rest) = tlv(fields)?;
        if t == tag {
            return Some(content);
        }
        fields = rest;
    }
    None
}

/// The NegTokenResp that carries an NTLM type 2 back to the client:
/// negState accept-incomplete, supportedMech NTLM, responseToken the type 2.
pub fn wrap_challenge(type2: &[u8]) -> Vec<u8> {
    let mut seq = der(0xa0, &der(0x0a, &[1])); // accept-incomplete
    seq.extend(der(0xa1, &der(0x06, OID_NTLM)));
    seq.extend(der(0xa2, &der(0x04, type2)));
    der(0xa1, &der(0x30, &seq))
}

/// One DER TLV (definite length, up to 64 KiB of content).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match content.len() {
        n @ 0..=0x7f => out.push(n as u8),
        n @ 0x80..=0xff => out.extend([0x81, n as u8]),
        n => {
            let n = u16::try_from(n).unwrap_or(u16::MAX);
            out.push(0x82);
            out.extend(n.to_be_bytes());
        }
    }
    out.extend_from_slice(content);
    out
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

    /// What curl with gss-ntlmssp sent here (its SPNEGO type 1).
    const CURL_TYPE1: &str = "604806062b0601050502a03e303ca00e300c060a2b06010401823702020aa22a04284e544c4d5353500001000000178208e200000000000000000000000000000000060200000000000f";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn finds_ntlm_inside_spnego() {
        let init = unhex(CURL_TYPE1);
        assert_eq!(inspect(&init), TokenKind::Spnego(Mech::Ntlm));
        let type1 = ntlm_inside(&init).expect("type 1 inside");
        assert!(type1.starts_with(b"NTLMSSP\0\x01\0\0\0"));
        assert_eq!(type1.len(), 40);

        // The client's type 3 comes back in a NegTokenResp, with a MIC.
        let mut seq = der(0xa2, &der(0x04, b"NTLMSSP\0\x03\0\0\0rest"));
        seq.extend(der(0xa3, &der(0x04, &[7; 16])));
        let resp = der(0xa1, &der(0x30, &seq));
        assert_eq!(ntlm_inside(&resp), Some(&b"NTLMSSP\0\x03\0\0\0rest"[..]));

        // Kerberos inside SPNEGO is not NTLM, whatever its mechToken says.
        assert_eq!(ntlm_inside(&spnego(OID_KRB5, 10)), None);
        // A NegTokenResp whose responseToken is not NTLMSSP is not either.
        let other = der(0xa1, &der(0x30, &der(0xa2, &der(0x04, b"krb5"))));
        assert_eq!(ntlm_inside(&other), None);
        assert_eq!(ntlm_inside(b"NTLMSSP\0\x01"), None);
    }

    #[test]
    fn challenge_round_trips() {
        let type2 = [b"NTLMSSP\0\x02\0\0\0".as_slice(), &[9; 300]].concat();
        let wrapped = wrap_challenge(&type2);
        assert_eq!(wrapped[0], 0xa1);
        assert_eq!(ntlm_inside(&wrapped), Some(type2.as_slice()));
        let (_, resp, rest) = tlv(&wrapped).unwrap();
        assert!(rest.is_empty());
        assert_eq!(field(resp, 0xa0), Some(&[0x0a, 0x01, 0x01][..]));
        assert_eq!(field(resp, 0xa1), Some(&der(0x06, OID_NTLM)[..]));
    }

    #[test]
    fn ntlm_inside_survives_every_prefix_and_mutation() {
        let t = unhex(CURL_TYPE1);
        for cut in 0..t.len() {
            assert_eq!(ntlm_inside(&t[..cut]), None, "cut {cut}");
        }
        for i in 0..t.len() {
            for v in [0x00, 0x7f, 0x80, 0x84, 0xff] {
                let mut m = t.clone();
                m[i] = v;
                if let Some(inner) = ntlm_inside(&m) {
                    assert!(inner.starts_with(b"NTLMSSP\0"));
                }
            }
        }
    }
}
