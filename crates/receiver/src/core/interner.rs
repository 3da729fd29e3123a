//! Sharing values that many index entries spell the same way (tag regexes,
//! semver constraints, namespaces, repository keys): one `Arc` per distinct
//! text, handed to every user, and released once no user holds it.
//!
//! Hand-written because the crates that intern (`internment`, `arc-interner`)
//! intern whole values (so a value must be built before it can be looked
//! up, which for a regex is the expensive part) and keep a global table;
//! this one looks values up by their text, builds only what is missing, and
//! lives with its index.
//!
//! Release is amortised: an entry only the interner still holds is dropped
//! when the table has doubled since the last sweep, so the table stays
//! within twice the values in use and each insertion costs O(1) on average.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A value identified by its text (what it was built from).
pub trait Keyed {
    /// The text the value was built from.
    fn key(&self) -> &str;
}

impl Keyed for str {
    fn key(&self) -> &str {
        self
    }
}

impl Keyed for masterminds_semver::Constraints {
    fn key(&self) -> &str {
        self.as_str()
    }
}

/// An entry of the table, hashed and compared by its key text.
struct Entry<T: ?Sized>(Arc<T>);

impl<T: Keyed + ?Sized> Borrow<str> for Entry<T> {
    fn borrow(&self) -> &str {
        self.0.key()
    }
}

impl<T: Keyed + ?Sized> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl<T: Keyed + ?Sized> Eq for Entry<T> {}

impl<T: Keyed + ?Sized> Hash for Entry<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that lookups by `&str` find the entry.
        self.0.key().hash(state);
    }
}

/// Below this size the table is never swept.
const MIN_SWEEP: usize = 64;

/// Values by their text; see the module docs.
pub struct Interner<T: Keyed + ?Sized> {
    entries: HashSet<Entry<T>>,
    sweep_at: usize,
}

impl<T: Keyed + ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Self {
            entries: HashSet::new(),
            sweep_at: MIN_SWEEP,
        }
    }
}

impl<T: Keyed + ?Sized> std::fmt::Debug for Interner<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl<T: Keyed + ?Sized> Interner<T> {
    /// The value spelled `key`, built by `build` (from `key`) if no user
    /// holds one. A value that fails to build is not kept.
    pub fn get_or_try_build<E>(
        &mut self,
        key: &str,
        build: impl FnOnce(&str) -> Result<Arc<T>, E>,
    ) -> Result<Arc<T>, E> {
        if let Some(entry) = self.entries.get(key) {
            return Ok(entry.0.clone());
        }
        let value = build(key)?;
        debug_assert_eq!(value.key(), key, "a value must be keyed by its text");
        if self.entries.len() >= self.sweep_at {
            self.entries.retain(|e| Arc::strong_count(&e.0) > 1);
            self.sweep_at = (self.entries.len() * 2).max(MIN_SWEEP);
        }
        self.entries.insert(Entry(value.clone()));
        Ok(value)
    }

    /// Distinct values held (some may be unused until the next sweep).
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

impl Interner<str> {
    /// The shared copy of `text`.
    pub fn string(&mut self, text: &str) -> Arc<str> {
        let built: Result<_, std::convert::Infallible> =
            self.get_or_try_build(text, |t| Ok(Arc::from(t)));
        match built {
            Ok(shared) => shared,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_text_while_used() {
        let mut strings = Interner::<str>::default();
        let a = strings.string("team-a");
        let b = strings.string("team-a");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &strings.string("team-b")));
        assert_eq!(strings.len(), 2);
    }

    #[test]
    fn unused_values_are_released_and_the_table_stays_bounded() {
        let mut strings = Interner::<str>::default();
        let kept = strings.string("kept");
        for i in 0..10_000 {
            // Each is dropped at once: only the interner holds it.
            strings.string(&format!("transient-{i}"));
            assert!(strings.len() <= 2 * MIN_SWEEP + 1, "{}", strings.len());
        }
        assert!(Arc::ptr_eq(&kept, &strings.string("kept")));
        // A released value is built again when asked for.
        let again = strings.string("transient-0");
        assert_eq!(&*again, "transient-0");
    }

    #[test]
    fn a_failed_build_keeps_nothing() {
        let mut strings = Interner::<str>::default();
        let failed: Result<Arc<str>, &str> = strings.get_or_try_build("bad", |_| Err("no"));
        assert_eq!(failed, Err("no"));
        assert_eq!(strings.len(), 0);
    }
}
