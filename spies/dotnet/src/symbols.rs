//! Code address → method name, from the runtime's method events.
//!
//! Every code range a method ever had is kept (tiered compilation gives one method several:
//! tier 0, tier 1, on-stack replacement) until an unload event retires it. Module names are
//! looked up when a frame is resolved: rundown sends the methods before their modules.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Default)]
pub struct Symbols {
    /// start → (end, method name, module id).
    ranges: BTreeMap<u64, (u64, Arc<str>, u64)>,
    /// Module id → file name (e.g. `System.Private.CoreLib.dll`).
    modules: HashMap<u64, Arc<str>>,
    /// One allocation per distinct name (re-jitted methods share it).
    names: HashMap<String, Arc<str>>,
}

/// A resolved frame.
pub struct Resolved<'a> {
    pub name: &'a Arc<str>,
    pub module: Option<&'a Arc<str>>,
}

impl Symbols {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn add_module(&mut self, id: u64, path: &str) {
        let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
        if !file.is_empty() {
            self.modules.insert(id, file.into());
        }
    }

    pub fn add_method(&mut self, start: u64, size: u32, name: String, module_id: u64) {
        if size == 0 {
            return;
        }
        let name = match self.names.get(&name) {
            Some(n) => n.clone(),
            None => {
                let n: Arc<str> = name.as_str().into();
                self.names.insert(name, n.clone());
                n
            }
        };
        self.ranges.insert(start, (start.saturating_add(size as u64), name, module_id));
    }

    pub fn remove_method(&mut self, start: u64) {
        if let Some((_, name, _)) = self.ranges.remove(&start) {
            // The names map and `name` are the last holders: no live range has this name.
            if Arc::strong_count(&name) == 2 {
                self.names.remove(&*name);
            }
        }
    }

    /// Distinct method names held.
    pub fn names(&self) -> usize {
        self.names.len()
    }

    pub fn resolve(&self, ip: u64) -> Option<Resolved<'_>> {
        let (_, (end, name, module)) = self.ranges.range(..=ip).next_back()?;
        (ip < *end).then(|| Resolved { name, module: self.modules.get(module) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_and_retire() {
        let mut s = Symbols::default();
        s.add_module(7, "/app/burn.dll");
        s.add_method(0x1000, 0x20, "A.B.Fast".into(), 7);
        s.add_method(0x2000, 0x10, "A.B.Fast".into(), 7); // re-jitted: a second range
        s.add_method(0x1020, 0x10, "A.B.Slow".into(), 9);
        assert_eq!(&**s.resolve(0x1000).unwrap().name, "A.B.Fast");
        assert_eq!(&**s.resolve(0x101f).unwrap().module.unwrap(), "burn.dll");
        assert_eq!(&**s.resolve(0x1020).unwrap().name, "A.B.Slow");
        assert!(s.resolve(0x1020).unwrap().module.is_none());
        assert_eq!(&**s.resolve(0x200f).unwrap().name, "A.B.Fast");
        assert!(s.resolve(0x2010).is_none());
        assert!(s.resolve(0xfff).is_none());
        s.remove_method(0x2000);
        assert!(s.resolve(0x2001).is_none());
        // Fast still has a range, so its name stays; Slow's goes with its last range.
        assert_eq!(s.names(), 2);
        s.remove_method(0x1020);
        assert_eq!(s.names(), 1);
        s.remove_method(0x1000);
        assert_eq!((s.names(), s.len()), (0, 0));
    }
}
