//! The ids of a game's last [`INPUT_WINDOW`] applied inputs: how a retry is recognised.
//!
//! Kept in apply order (oldest first) with a set beside it for lookups; the oldest id leaves
//! when a new one would make more than [`INPUT_WINDOW`]. Serialised as the sequence of ids in
//! apply order, so equal games give equal bytes (the order is part of the state: it decides
//! which id leaves next). Decoding is bounded: more than [`INPUT_WINDOW`] ids, an id that is
//! not a valid `input_id` (1 to [`MAX_INPUT_ID_BYTES`] bytes, printable) or a repeated id is
//! refused before anything is stored, and an id's length is checked before it is copied.
//!
//! A state of a build that kept every id (a sorted set) decodes as a window in sorted order,
//! as long as it holds at most [`INPUT_WINDOW`] ids: the wire shape (a sequence of strings) is
//! the same.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::INPUT_WINDOW;
use crate::input::{MAX_INPUT_ID_BYTES, check_input_id};

/// The last [`INPUT_WINDOW`] applied input ids.
#[derive(Clone, Default)]
pub(crate) struct InputWindow {
    /// Oldest first. Shares each id's bytes with `lookup`.
    order: VecDeque<Arc<str>>,
    lookup: HashSet<Arc<str>>,
}

impl InputWindow {
    /// Whether `id` is one of the last [`INPUT_WINDOW`] applied ids.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.lookup.contains(id)
    }

    /// Records an applied id (not already in the window), forgetting the oldest when full.
    pub(crate) fn push(&mut self, id: String) {
        let id: Arc<str> = Arc::from(id);
        if !self.lookup.insert(id.clone()) {
            return;
        }
        self.order.push_back(id);
        while self.order.len() > INPUT_WINDOW {
            if let Some(oldest) = self.order.pop_front() {
                self.lookup.remove(&oldest);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// The ids, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|id| &**id)
    }
}

impl PartialEq for InputWindow {
    fn eq(&self, other: &Self) -> bool {
        // `lookup` holds the same ids as `order`.
        self.order == other.order
    }
}

impl Eq for InputWindow {}

impl fmt::Debug for InputWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for InputWindow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for InputWindow {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(WindowVisitor)
    }
}

struct WindowVisitor;

impl<'de> Visitor<'de> for WindowVisitor {
    type Value = InputWindow;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at most {INPUT_WINDOW} distinct input ids")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<InputWindow, A::Error> {
        // Postcard announces the length first: refuse a long window before reading any of it.
        if let Some(n) = seq.size_hint().filter(|n| *n > INPUT_WINDOW) {
            return Err(de::Error::invalid_length(n, &self));
        }
        let mut window = InputWindow::default();
        while let Some(BoundedId(id)) = seq.next_element()? {
            if window.len() == INPUT_WINDOW {
                return Err(de::Error::invalid_length(INPUT_WINDOW + 1, &self));
            }
            if window.contains(&id) {
                return Err(de::Error::custom(format!(
                    "input id `{id}` appears twice in the window"
                )));
            }
            window.push(id);
        }
        Ok(window)
    }
}

/// An `input_id` checked before it is copied out of the input.
struct BoundedId(String);

impl<'de> Deserialize<'de> for BoundedId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(IdVisitor)
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = BoundedId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an input id of 1 to {MAX_INPUT_ID_BYTES} bytes")
    }

    fn visit_str<E: de::Error>(self, id: &str) -> Result<BoundedId, E> {
        check_input_id(id).map_err(E::custom)?;
        Ok(BoundedId(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(n: usize) -> InputWindow {
        let mut w = InputWindow::default();
        for i in 0..n {
            w.push(format!("id-{i}"));
        }
        w
    }

    #[test]
    fn keeps_the_newest_ids_in_apply_order() {
        let w = window(INPUT_WINDOW + 3);
        assert_eq!(w.len(), INPUT_WINDOW);
        assert_eq!(w.iter().next(), Some("id-3"));
        assert!(!w.contains("id-2"));
        assert!(w.contains("id-3"));
        assert!(w.contains(&format!("id-{}", INPUT_WINDOW + 2)));
        assert_eq!(w.lookup.len(), INPUT_WINDOW);
    }

    #[test]
    fn round_trips_and_refuses_what_no_game_holds() {
        let w = window(INPUT_WINDOW);
        let bytes = postcard::to_allocvec(&w).unwrap();
        assert_eq!(postcard::from_bytes::<InputWindow>(&bytes).unwrap(), w);

        // One id too many.
        let mut ids: Vec<String> = w.iter().map(str::to_string).collect();
        ids.push("one-more".into());
        let err = postcard::from_bytes::<InputWindow>(&postcard::to_allocvec(&ids).unwrap());
        assert!(err.is_err());
        let err =
            serde_json::from_str::<InputWindow>(&serde_json::to_string(&ids).unwrap()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid length 1025, expected at most 1024 distinct input ids"),
            "{err}"
        );
        // A length prefix announcing billions of ids is refused before reading them.
        let mut huge = Vec::new();
        huge.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(postcard::from_bytes::<InputWindow>(&huge).is_err());

        // Ids that no input could have.
        for bad in [
            vec!["x".repeat(65)],
            vec![String::new()],
            vec!["a\n".into()],
        ] {
            let json = serde_json::to_string(&bad).unwrap();
            assert!(
                serde_json::from_str::<InputWindow>(&json).is_err(),
                "{json}"
            );
            let bytes = postcard::to_allocvec(&bad).unwrap();
            assert!(
                postcard::from_bytes::<InputWindow>(&bytes).is_err(),
                "{json}"
            );
        }
        let err =
            serde_json::from_str::<InputWindow>(&format!(r#"["{}"]"#, "x".repeat(65))).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`input_id` is 65 bytes long in UTF-8; it must be 1 to 64 bytes"),
            "{err}"
        );
        // The same id twice.
        let err = serde_json::from_str::<InputWindow>(r#"["a","b","a"]"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("input id `a` appears twice in the window"),
            "{err}"
        );
    }

    #[test]
    fn reads_the_sorted_set_of_earlier_builds() {
        let old: std::collections::BTreeSet<String> =
            ["b", "a", "c"].into_iter().map(String::from).collect();
        let w: InputWindow = postcard::from_bytes(&postcard::to_allocvec(&old).unwrap()).unwrap();
        assert_eq!(w.iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }
}
