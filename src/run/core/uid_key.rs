//! Pod UIDs as keys of the job maps, which hold one entry per job of ours: a UID in the
//! canonical UUID form the API server assigns is kept as its 16 bytes rather than as a
//! 36-character string on the heap. Any other text is kept as it is, so two different UIDs
//! never share a key.

/// One pod UID, compactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UidKey {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl UidKey {
    pub fn new(uid: &str) -> Self {
        match parse_uuid(uid) {
            Some(bytes) => Self::Uuid(bytes),
            None => Self::Text(uid.into()),
        }
    }
}

/// The bytes of a lowercase `8-4-4-4-12` UUID; `None` for anything else (uppercase hex
/// too, so that each key stands for exactly one string).
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut nibbles = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        out[nibbles / 2] |= if nibbles % 2 == 0 { v << 4 } else { v };
        nibbles += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uuids_are_packed_and_distinct() {
        let a = UidKey::new("7c3e0b9a-1f2d-4e5f-8a9b-0c1d2e3f4a5b");
        let b = UidKey::new("7c3e0b9a-1f2d-4e5f-8a9b-0c1d2e3f4a5c");
        assert!(matches!(a, UidKey::Uuid(_)));
        assert_ne!(a, b);
        assert_eq!(a, UidKey::new("7c3e0b9a-1f2d-4e5f-8a9b-0c1d2e3f4a5b"));
        let UidKey::Uuid(bytes) = a else {
            unreachable!()
        };
        assert_eq!(bytes[0], 0x7c);
        assert_eq!(bytes[15], 0x5b);
    }

    #[test]
    fn other_text_is_kept_whole() {
        for uid in [
            "7C3E0B9A-1F2D-4E5F-8A9B-0C1D2E3F4A5B", // uppercase: a different string
            "7c3e0b9a11f2d-4e5f-8a9b-0c1d2e3f4a5b",
            "pod-1",
            "",
        ] {
            assert_eq!(UidKey::new(uid), UidKey::Text(uid.into()), "{uid}");
        }
        assert_ne!(
            UidKey::new("7C3E0B9A-1F2D-4E5F-8A9B-0C1D2E3F4A5B"),
            UidKey::new("7c3e0b9a-1f2d-4e5f-8a9b-0c1d2e3f4a5b")
        );
    }
}
