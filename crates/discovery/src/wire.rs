//! The versioned byte envelope every message of the layers above (`horde`, an application's
//! console) crosses the cluster in.
//!
//! ractor_cluster matches remote messages by variant name and silently drops what it cannot
//! decode, so our remotable actors expose a couple of variants that never change and carry an
//! [`Envelope`]: a protocol version followed by a postcard payload. Decoding happens in the
//! receiving actor, where an error can be logged and answered. This module owns that format;
//! it must not know any protocol's message types.

use ractor::BytesConvertable;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version of the envelope layout itself (not of the protocols inside it).
pub const ENVELOPE_VERSION: u16 = 1;

/// Why an envelope could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer speaks a newer envelope layout than this build understands.
    #[error(
        "peer uses wire format v{0}, this node understands v{ENVELOPE_VERSION}: upgrade this node"
    )]
    NewerEnvelope(u16),
    /// The bytes are not a valid message of the expected type.
    #[error("malformed cluster message: {0}")]
    Malformed(#[from] postcard::Error),
}

/// Opaque bytes of one message: `(ENVELOPE_VERSION, payload)` in postcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope(Vec<u8>);

impl Envelope {
    /// Encodes `msg`.
    pub fn encode<T: Serialize>(msg: &T) -> Result<Self, WireError> {
        Ok(Self(postcard::to_stdvec(&(ENVELOPE_VERSION, msg))?))
    }

    /// Encodes `msg` followed by `appended`: fields a later protocol adds after a message
    /// whose layout an older reader knows. That reader decodes `msg` and never looks further
    /// ([`Envelope::decode`] ignores what follows); a newer one reads both with
    /// [`Envelope::decode_head`].
    pub fn encode_appended<T: Serialize, A: Serialize>(
        msg: &T,
        appended: &A,
    ) -> Result<Self, WireError> {
        let bytes = postcard::to_stdvec(&(ENVELOPE_VERSION, msg))?;
        Ok(Self(postcard::to_extend(appended, bytes)?))
    }

    /// The payload after the envelope version, refused when a newer envelope wrote it.
    pub fn payload(&self) -> Result<&[u8], WireError> {
        let (version, rest): (u16, &[u8]) = postcard::take_from_bytes(&self.0)?;
        if version > ENVELOPE_VERSION {
            return Err(WireError::NewerEnvelope(version));
        }
        Ok(rest)
    }

    /// Decodes the payload as a `T`. postcard bounds every allocation by the input length, and
    /// ractor_cluster bounds the input by its frame limit.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, WireError> {
        Ok(postcard::from_bytes(self.payload()?)?)
    }

    /// Decodes a `T` and returns the bytes that follow it (fields a newer sender appended, for
    /// the caller to read or count).
    pub fn decode_head<T: DeserializeOwned>(&self) -> Result<(T, &[u8]), WireError> {
        Ok(postcard::take_from_bytes(self.payload()?)?)
    }

    /// Decodes a message whose later versions may append fields: `H` is what every version
    /// sends, `X` the fields appended since (`X::default()` when the sender predates them).
    /// Encode such a message as a struct or tuple whose fields are `H`'s followed by `X`'s.
    /// Trailing bytes after `X` (fields appended by a newer sender) are ignored.
    pub fn decode_extended<H: DeserializeOwned, X: DeserializeOwned + Default>(
        &self,
    ) -> Result<(H, X), WireError> {
        let (head, rest): (H, &[u8]) = postcard::take_from_bytes(self.payload()?)?;
        if rest.is_empty() {
            return Ok((head, X::default()));
        }
        Ok((head, postcard::from_bytes(rest)?))
    }

    /// Size on the wire, for metrics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for an empty envelope (never produced by [`Envelope::encode`]).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl BytesConvertable for Envelope {
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Msg {
        a: u64,
        b: String,
        c: Vec<u8>,
    }

    proptest! {
        #[test]
        fn round_trip(a: u64, b: String, c: Vec<u8>) {
            let m = Msg { a, b, c };
            let e = Envelope::encode(&m).unwrap();
            prop_assert_eq!(e.decode::<Msg>().unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(bytes: Vec<u8>) {
            let _ = Envelope::from_bytes(bytes).decode::<Msg>();
        }
    }

    #[test]
    fn an_extended_message_decodes_with_and_without_its_extension() {
        let old = Envelope::encode(&(7u64, "a".to_string())).unwrap();
        let new = Envelope::encode(&(7u64, "a".to_string(), Some(9u32))).unwrap();
        let newer = Envelope::encode(&(7u64, "a".to_string(), Some(9u32), 1u8)).unwrap();
        type Head = (u64, String);
        assert_eq!(
            old.decode_extended::<Head, Option<u32>>().unwrap(),
            ((7, "a".into()), None)
        );
        assert_eq!(
            new.decode_extended::<Head, Option<u32>>().unwrap(),
            ((7, "a".into()), Some(9))
        );
        assert_eq!(
            newer.decode_extended::<Head, Option<u32>>().unwrap(),
            ((7, "a".into()), Some(9))
        );
        // An old reader ignores what it does not know.
        assert_eq!(new.decode::<Head>().unwrap(), (7, "a".into()));
    }

    #[test]
    fn appended_fields_are_invisible_to_an_old_reader_and_read_by_a_new_one() {
        let e = Envelope::encode_appended(&(7u64, "a".to_string()), &9u16).unwrap();
        assert_eq!(e.decode::<(u64, String)>().unwrap(), (7, "a".into()));
        let (head, rest) = e.decode_head::<(u64, String)>().unwrap();
        assert_eq!(head, (7, "a".into()));
        assert_eq!(postcard::from_bytes::<u16>(rest).unwrap(), 9);
    }

    #[test]
    fn huge_length_prefix_is_an_error_not_an_allocation() {
        // version 1, a = 0, then a string length of 2^63.
        let bytes = vec![1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(Envelope::from_bytes(bytes).decode::<Msg>().is_err());
    }

    #[test]
    fn newer_envelope_is_refused_clearly() {
        let bytes = postcard::to_stdvec(&(ENVELOPE_VERSION + 1, 5u8)).unwrap();
        let err = Envelope::from_bytes(bytes).decode::<u8>().unwrap_err();
        assert!(err.to_string().contains("upgrade this node"), "{err}");
    }
}
