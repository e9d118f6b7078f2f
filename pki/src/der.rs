//! Small encoding helpers: PEM armour (64-column base64, `\n` line ends, as Go writes it) and
//! the one DER walk needed to turn a PKCS#8 RSA key into PKCS#1.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// PEM-encodes one block.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Every PEM block in `text` as (label, DER), in order. Text outside blocks is ignored.
pub fn pem_blocks(text: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "not UTF-8 PEM text".to_string())?;
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if let Some(label) =
            line.strip_prefix("-----END ").and_then(|l| l.strip_suffix("-----"))
        {
            let (open, body) = current.take().ok_or("END line without BEGIN")?;
            if open != label {
                return Err(format!("PEM block BEGIN {open} closed by END {label}"));
            }
            let der = STANDARD.decode(body).map_err(|e| format!("bad base64 in {label}: {e}"))?;
            blocks.push((open, der));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
        }
    }
    if current.is_some() {
        return Err("unterminated PEM block".into());
    }
    Ok(blocks)
}

/// Reads one DER TLV header: (tag, content start, content end).
fn tlv(data: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *data.get(at)?;
    let first = *data.get(at + 1)? as usize;
    let (len, start) = if first < 0x80 {
        (first, at + 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *data.get(at + 2 + i)? as usize;
        }
        (len, at + 2 + n)
    };
    let end = start.checked_add(len)?;
    (end <= data.len()).then_some((tag, start, end))
}

/// The `privateKey` OCTET STRING of a PKCS#8 PrivateKeyInfo (for RSA: the PKCS#1 key).
pub(crate) fn pkcs8_inner_key(pkcs8: &[u8]) -> Option<&[u8]> {
    let (tag, start, _) = tlv(pkcs8, 0)?;
    if tag != 0x30 {
        return None;
    }
    let (version_tag, _, after_version) = tlv(pkcs8, start)?;
    let (alg_tag, _, after_alg) = tlv(pkcs8, after_version)?;
    let (key_tag, key_start, key_end) = tlv(pkcs8, after_alg)?;
    (version_tag == 0x02 && alg_tag == 0x30 && key_tag == 0x04).then(|| &pkcs8[key_start..key_end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_errors() {
        let der: Vec<u8> = (0..=200u8).collect();
        let pem = pem_encode("CERTIFICATE", &der);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let two = format!("{pem}junk\n{}", pem_encode("PUBLIC KEY", b"x"));
        let blocks = pem_blocks(two.as_bytes()).unwrap();
        assert_eq!(blocks[0], ("CERTIFICATE".to_string(), der));
        assert_eq!(blocks[1].0, "PUBLIC KEY");
        assert!(pem_blocks(b"-----BEGIN A-----\nAAAA\n").is_err());
        assert!(pem_blocks(b"-----BEGIN A-----\nAAAA\n-----END B-----\n").is_err());
    }

    #[test]
    fn pkcs8_inner_key_rejects_garbage() {
        assert_eq!(pkcs8_inner_key(&[0x30, 0x05, 0x02]), None);
        assert_eq!(pkcs8_inner_key(b""), None);
        let ok = [0x30, 0x0a, 0x02, 0x01, 0x00, 0x30, 0x00, 0x04, 0x03, 0xaa, 0xbb, 0xcc];
        assert_eq!(pkcs8_inner_key(&ok), Some(&[0xaa, 0xbb, 0xcc][..]));
    }
}
