//! [`Meta`]: JSON metadata, what a session shows the members of a room.

use std::fmt;
use std::io;

use presence_tracker::Metadata;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Metadata as JSON, whatever the client sends: a display name, a colour, "editing section 2",
/// a cursor. Its [`size`](Metadata::size) is its serialised length in bytes, which the
/// tracker's policy bounds (`max_metadata_bytes`, 4 KiB by default).
///
/// The metadata type of a hub whose clients speak JSON:
/// `Hub<String, String, SystemClock, String, Meta>`. An application that wants typed metadata
/// uses its own serde type implementing [`Metadata`] instead.
///
/// # Examples
///
/// ```
/// use presence_tracker::Metadata;
/// use presence_tracker_server::Meta;
///
/// let meta = Meta::from_json(r#"{"name": "Ada", "section": 2}"#)?;
/// assert_eq!(meta.to_string(), r#"{"name":"Ada","section":2}"#);
/// assert_eq!(meta.size(), 26); // the compact text's bytes
///
/// #[derive(serde::Deserialize)]
/// struct Editing { section: u32 }
/// assert_eq!(meta.parse::<Editing>()?.section, 2);
/// # Ok::<(), presence_tracker_server::MetaError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct Meta {
    value: serde_json::Value,
    /// The serialised length, counted once.
    size: usize,
}

impl Meta {
    /// The metadata of any serialisable value.
    ///
    /// # Errors
    ///
    /// A value serde_json cannot represent (a map with non-string keys, a failing `Serialize`).
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Self, MetaError> {
        serde_json::to_value(value)
            .map(Meta::of_value)
            .map_err(MetaError)
    }

    /// The metadata of a JSON text.
    ///
    /// # Errors
    ///
    /// Text that is not JSON.
    pub fn from_json(text: &str) -> Result<Self, MetaError> {
        serde_json::from_str(text)
            .map(Meta::of_value)
            .map_err(MetaError)
    }

    /// The metadata read as `T`.
    ///
    /// # Errors
    ///
    /// The JSON is not a `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, MetaError> {
        T::deserialize(&self.value).map_err(MetaError)
    }

    /// `null`: no metadata (what a join without any carries).
    pub fn is_null(&self) -> bool {
        self.value.is_null()
    }

    fn of_value(value: serde_json::Value) -> Self {
        let mut counter = Counter(0);
        // Writing a `Value` to a counter cannot fail.
        let _ = serde_json::to_writer(&mut counter, &value);
        Meta {
            value,
            size: counter.0,
        }
    }
}

impl Default for Meta {
    fn default() -> Self {
        Meta::of_value(serde_json::Value::Null)
    }
}

impl Metadata for Meta {
    fn size(&self) -> usize {
        self.size
    }
}

impl fmt::Display for Meta {
    /// The JSON text, compact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.value, f)
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Meta({})", self.value)
    }
}

impl Serialize for Meta {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Meta::of_value)
    }
}

/// JSON that could not become or be read as [`Meta`].
#[derive(Debug)]
pub struct MetaError(serde_json::Error);

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metadata: {}", self.0)
    }
}

impl std::error::Error for MetaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Counts the bytes written to it.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_the_compact_serialised_length() {
        let meta: Meta = serde_json::from_str(r#"{ "name" : "Åsa" }"#).expect("json");
        let compact = serde_json::to_string(&meta).expect("serialises");
        assert_eq!(compact, r#"{"name":"Åsa"}"#);
        assert_eq!(meta.size(), compact.len());
        assert_eq!(Meta::default().size(), 4);
        assert!(Meta::default().is_null());
    }

    #[test]
    fn not_json_is_an_error() {
        assert!(Meta::from_json("{").is_err());
        assert!(Meta::from_json("1").is_ok_and(|m| m.parse::<u8>().ok() == Some(1)));
    }
}
