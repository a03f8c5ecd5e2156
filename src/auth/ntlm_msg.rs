//! NTLM messages (MS-NLMP §2.2), sans I/O: just enough to route a handshake
//! and to log who is trying — type, flags, and from a type 3 the user, domain,
//! workstation and whether it is NTLMv1. The responses themselves are never
//! kept or logged; the domain controller validates them.

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const FLAG_UNICODE: u32 = 0x0000_0001;
/// Longest name field we decode (domain, user, workstation).
const MAX_NAME: usize = 512;

/// One NTLMSSP message, as far as the proxy reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NtlmMessage {
    /// Type 1: the client starts a handshake.
    Negotiate {
        /// The negotiate flags.
        flags: u32,
    },
    /// Type 2: the server's challenge (never sent by a client).
    Challenge {
        /// The negotiate flags.
        flags: u32,
        /// The server's nonce.
        challenge: [u8; 8],
    },
    /// Type 3: the client's response.
    Authenticate(Authenticate),
}

/// What a type 3 says about who answers, for policy and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate {
    /// The negotiate flags.
    pub flags: u32,
    /// The NetBIOS domain the client names.
    pub domain: String,
    /// The user name the client names.
    pub user: String,
    /// The client's host name, as it says.
    pub workstation: String,
    /// NT response length 24: NTLMv1 (or LM only when 0), weak.
    pub ntlm_v1: bool,
    /// No NT response and no LM response: an anonymous logon.
    pub anonymous: bool,
}

/// Why bytes are not an NTLM message we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NtlmError {
    /// No `NTLMSSP\0` signature.
    #[error("not an NTLMSSP message")]
    Signature,
    /// Shorter than its fixed part.
    #[error("truncated NTLM message")]
    Truncated,
    /// A message type other than 1, 2 or 3.
    #[error("unknown NTLM message type {0}")]
    Type(u32),
    /// A field's offset or length points outside the message.
    #[error("NTLM field outside the message")]
    Field,
    /// A name is not valid UTF-16 or is too long.
    #[error("NTLM name field not decodable")]
    Name,
}

fn u16le(b: &[u8], at: usize) -> Result<u16, NtlmError> {
    b.get(at..at + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(NtlmError::Truncated)
}

fn u32le(b: &[u8], at: usize) -> Result<u32, NtlmError> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(NtlmError::Truncated)
}

/// A security buffer (len u16, maxlen u16, offset u32) at `at`, resolved.
fn field(b: &[u8], at: usize) -> Result<&[u8], NtlmError> {
    let len = u16le(b, at)? as usize;
    let offset = u32le(b, at + 4)? as usize;
    if len == 0 {
        return Ok(&[]);
    }
    b.get(offset..offset.checked_add(len).ok_or(NtlmError::Field)?)
        .ok_or(NtlmError::Field)
}

fn text(raw: &[u8], unicode: bool) -> Result<String, NtlmError> {
    if raw.len() > MAX_NAME {
        return Err(NtlmError::Name);
    }
    let s = if unicode {
        if raw.len() % 2 != 0 {
            return Err(NtlmError::Name);
        }
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| NtlmError::Name)?
    } else {
        String::from_utf8(raw.to_vec()).map_err(|_| NtlmError::Name)?
    };
    if s.chars().any(char::is_control) {
        return Err(NtlmError::Name);
    }
    Ok(s)
}

/// Parses one NTLM message.
pub fn parse(b: &[u8]) -> Result<NtlmMessage, NtlmError> {
    if b.len() < 12 {
        return Err(if SIGNATURE.starts_with(b) {
            NtlmError::Truncated
        } else {
            NtlmError::Signature
        });
    }
    if &b[..8] != SIGNATURE {
        return Err(NtlmError::Signature);
    }
    match u32le(b, 8)? {
        1 => Ok(NtlmMessage::Negotiate {
            flags: u32le(b, 12)?,
        }),
        2 => {
            let flags = u32le(b, 20)?;
            let challenge: [u8; 8] = b
                .get(24..32)
                .ok_or(NtlmError::Truncated)?
                .try_into()
                .map_err(|_| NtlmError::Truncated)?;
            Ok(NtlmMessage::Challenge { flags, challenge })
        }
        3 => {
            let flags = u32le(b, 60)?;
            let unicode = flags & FLAG_UNICODE != 0;
            let lm = field(b, 12)?;
            let nt = field(b, 20)?;
            Ok(NtlmMessage::Authenticate(Authenticate {
                flags,
                domain: text(field(b, 28)?, unicode)?,
                user: text(field(b, 36)?, unicode)?,
                workstation: text(field(b, 44)?, unicode)?,
                ntlm_v1: nt.len() == 24 || (nt.is_empty() && !lm.is_empty()),
                anonymous: nt.is_empty() && lm.len() <= 1,
            }))
        }
        t => Err(NtlmError::Type(t)),
    }
}

/// Builders of NTLM messages for other modules' tests.
#[cfg(test)]
pub mod tests {
    use super::*;

    /// A type 3 with the given names and NT response length (Unicode).
    pub fn type3(domain: &str, user: &str, nt_len: usize) -> Vec<u8> {
        let utf16 = |s: &str| {
            s.encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        };
        let (d, u, w) = (utf16(domain), utf16(user), utf16("WS1"));
        let lm = vec![0u8; 24];
        let nt = vec![0x11u8; nt_len];
        let mut payload = Vec::new();
        let mut fields = Vec::new();
        let base = 64u32;
        for part in [&lm, &nt, &d, &u, &w] {
            fields.push((part.len() as u16, base + payload.len() as u32));
            payload.extend_from_slice(part);
        }
        let mut m = SIGNATURE.to_vec();
        m.extend_from_slice(&3u32.to_le_bytes());
        for (len, off) in &fields {
            m.extend_from_slice(&len.to_le_bytes());
            m.extend_from_slice(&len.to_le_bytes());
            m.extend_from_slice(&off.to_le_bytes());
        }
        m.extend_from_slice(&[0u8; 8]); // session key buffer
        m.extend_from_slice(&(FLAG_UNICODE | 0x0008_0000).to_le_bytes());
        assert_eq!(m.len(), 64);
        m.extend_from_slice(&payload);
        m
    }

    #[test]
    fn reads_all_three_types() {
        let t1 = b"NTLMSSP\0\x01\x00\x00\x00\x07\x82\x08\xa2\x00\x00\x00\x00";
        assert_eq!(
            parse(t1).unwrap(),
            NtlmMessage::Negotiate { flags: 0xa208_8207 }
        );
        let mut t2 = b"NTLMSSP\0\x02\x00\x00\x00".to_vec();
        t2.extend_from_slice(&[0; 8]); // target name
        t2.extend_from_slice(&0x0000_0001u32.to_le_bytes());
        t2.extend_from_slice(b"12345678");
        assert_eq!(
            parse(&t2).unwrap(),
            NtlmMessage::Challenge {
                flags: 1,
                challenge: *b"12345678"
            }
        );
        let NtlmMessage::Authenticate(a) = parse(&type3("ADTEST", "alice", 120)).unwrap() else {
            panic!()
        };
        assert_eq!(
            (a.domain.as_str(), a.user.as_str(), a.workstation.as_str()),
            ("ADTEST", "alice", "WS1")
        );
        assert!(!a.ntlm_v1 && !a.anonymous);
        let NtlmMessage::Authenticate(v1) = parse(&type3("D", "bob", 24)).unwrap() else {
            panic!()
        };
        assert!(v1.ntlm_v1);
    }

    #[test]
    fn hostile_and_truncated_messages_are_errors() {
        assert_eq!(parse(b"").unwrap_err(), NtlmError::Truncated);
        assert_eq!(parse(b"NTLM").unwrap_err(), NtlmError::Truncated);
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\n").unwrap_err(),
            NtlmError::Signature
        );
        assert_eq!(
            parse(b"NTLMSSP\0\x09\x00\x00\x00\x00\x00\x00\x00").unwrap_err(),
            NtlmError::Type(9)
        );
        let t3 = type3("ADTEST", "alice", 120);
        for cut in 0..t3.len() {
            assert!(parse(&t3[..cut]).is_err(), "cut {cut}");
        }
        // An offset pointing past the end, and one that overflows.
        let mut bad = t3.clone();
        bad[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&bad).unwrap_err(), NtlmError::Field);
        // A user name with a control character, and odd-length UTF-16.
        assert_eq!(
            parse(&type3("D", "a\nb", 120)).unwrap_err(),
            NtlmError::Name
        );
        let mut odd = t3.clone();
        odd[36] = 9;
        assert!(parse(&odd).is_err());
        for i in 0..t3.len() {
            for v in [0x00, 0x7f, 0xff] {
                let mut m = t3.clone();
                m[i] = v;
                let _ = parse(&m);
            }
        }
    }
}
