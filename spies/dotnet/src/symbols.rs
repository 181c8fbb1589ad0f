//! Code address → method name, from the runtime's method events.
//!
//! Every code range a method ever had is kept (tiered compilation gives one method several:
//! tier 0, tier 1, on-stack replacement) until an unload event retires it. Module names are
//! looked up when a frame is resolved: rundown sends the methods before their modules.
//!
//! A precompiled (ReadyToRun) method used for the first time is announced with its entry point
//! only. Its range runs from there to the next known method, at most [`OPEN_RANGE`] and never
//! past the end of the image's code mapping. Code of a ReadyToRun method cannot run before its
//! entry point is resolved, and the ones resolved before the session are in the rundown, so the
//! method before an address is the one that holds it. Its module is the image mapped there.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The longest a ReadyToRun method announced by its entry point only is taken to be.
pub const OPEN_RANGE: u64 = 64 << 10;

#[derive(Default)]
pub struct Symbols {
    /// start → (end, method name, module id).
    ranges: BTreeMap<u64, (u64, Arc<str>, u64)>,
    /// Module id → file name (e.g. `System.Private.CoreLib.dll`).
    modules: HashMap<u64, Arc<str>>,
    /// One allocation per distinct name (re-jitted methods share it).
    names: HashMap<String, Arc<str>>,
    /// Code mappings of managed images: start → (end, file name).
    images: BTreeMap<u64, (u64, Arc<str>)>,
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
        let name = self.intern(name);
        self.ranges
            .insert(start, (start.saturating_add(size as u64), name, module_id));
    }

    /// A ReadyToRun method known by its entry point only (see the module comment). A range
    /// already known there, with its size, is kept.
    pub fn add_entry_point(&mut self, start: u64, name: String) {
        if start == 0 || self.ranges.contains_key(&start) {
            return;
        }
        let mut end = start.saturating_add(OPEN_RANGE);
        if let Some((image_end, _)) = self.image(start) {
            end = end.min(*image_end);
        }
        let name = self.intern(name);
        // Module id 0: named after the image mapped there.
        self.ranges.insert(start, (end, name, 0));
    }

    fn intern(&mut self, name: String) -> Arc<str> {
        match self.names.get(&name) {
            Some(n) => n.clone(),
            None => {
                let n: Arc<str> = name.as_str().into();
                self.names.insert(name, n.clone());
                n
            }
        }
    }

    /// Replaces the known code mappings of managed images: (start, end, file name).
    pub fn set_images(&mut self, images: Vec<(u64, u64, String)>) {
        self.images = images
            .into_iter()
            .map(|(a, b, f)| (a, (b, f.into())))
            .collect();
    }

    /// The image code mapping that holds `ip`: (end, file name).
    pub fn image(&self, ip: u64) -> Option<&(u64, Arc<str>)> {
        self.images
            .range(..=ip)
            .next_back()
            .map(|(_, v)| v)
            .filter(|(end, _)| ip < *end)
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
        (ip < *end).then(|| Resolved {
            name,
            module: self
                .modules
                .get(module)
                .or_else(|| self.image(ip).map(|(_, file)| file)),
        })
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

    #[test]
    fn entry_points_run_to_the_next_method_within_their_image() {
        let mut s = Symbols::default();
        s.set_images(vec![(
            0x10_0000,
            0x20_0000,
            "System.Private.CoreLib.dll".into(),
        )]);
        s.add_entry_point(0x10_1000, "System.Threading.Thread.Start".into());
        s.add_method(0x10_2000, 0x100, "A.B.Jitted".into(), 7);
        s.add_entry_point(0x1f_f000, "System.Last".into());
        s.add_entry_point(0x30_0000, "Outside.Images".into());
        let r = s.resolve(0x10_1abc).unwrap();
        assert_eq!(&**r.name, "System.Threading.Thread.Start");
        assert_eq!(r.module.map(|m| &**m), Some("System.Private.CoreLib.dll"));
        // The next method starts the next range; past the image's end nothing resolves.
        assert_eq!(&**s.resolve(0x10_2010).unwrap().name, "A.B.Jitted");
        assert!(s.resolve(0x10_2100).is_none());
        assert_eq!(&**s.resolve(0x1f_ffff).unwrap().name, "System.Last");
        assert!(s.resolve(0x20_0000).is_none());
        // Outside any image: at most OPEN_RANGE, and no module.
        assert!(s
            .resolve(0x30_0000 + OPEN_RANGE - 1)
            .unwrap()
            .module
            .is_none());
        assert!(s.resolve(0x30_0000 + OPEN_RANGE).is_none());
        // A range known with its size is not replaced by an entry point; a later size replaces one.
        s.add_entry_point(0x10_2000, "Other".into());
        assert_eq!(&**s.resolve(0x10_2010).unwrap().name, "A.B.Jitted");
        s.add_method(0x10_1000, 0x10, "System.Threading.Thread.Start".into(), 9);
        assert!(s.resolve(0x10_1abc).is_none());
    }
}
