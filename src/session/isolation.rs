//! Spy code never takes the agent (or the program) down: attach and sample calls run under
//! `catch_unwind`, and a panic inside a spy is kept off stderr by the panic hook; the session
//! counts it and logs it, rate-limited.

use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static IN_SPY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Installs a panic hook that keeps panics inside spies off stderr (they are counted and logged,
/// rate-limited); other panics are printed as usual.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_SPY.with(|s| s.get()) {
            let msg = match (
                info.payload().downcast_ref::<&str>(),
                info.payload().downcast_ref::<String>(),
            ) {
                (Some(s), _) => s.to_string(),
                (_, Some(s)) => s.clone(),
                _ => "unknown panic".into(),
            };
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|p| *p.borrow_mut() = format!("{msg}{at}"));
        } else {
            default(info);
        }
    }));
}

/// Runs spy code, turning a panic into an error message.
pub(super) fn in_spy<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    IN_SPY.with(|s| s.set(true));
    let r = catch_unwind(AssertUnwindSafe(f));
    IN_SPY.with(|s| s.set(false));
    r.map_err(|_| LAST_PANIC.with(|p| p.borrow().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_in_spies_are_caught() {
        install_panic_hook();
        let r: Result<(), String> = in_spy(|| panic!("index out of bounds"));
        assert!(r.unwrap_err().contains("index out of bounds"));
        assert_eq!(in_spy(|| 7).unwrap(), 7);
    }
}
