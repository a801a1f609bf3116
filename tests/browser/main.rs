//! The web app in a real browser: headless Chromium driven through ChromeDriver
//! (WebDriver) against the server in-process, with the pages built into the binary.
//! People's flows end to end — a buyer picks seats on the map, holds and pays; a
//! second browser sees them sold without reloading; an organizer builds, publishes
//! and watches a sale; door staff scan a ticket image twice — plus bad input shown
//! in words, and no console errors (a CSP violation is one).
//!
//! With `BOXOFFICE_SCREENSHOTS=DIR` the tests save the README's screenshots there
//! (`docs/screenshots/` in the repository); figures for the 20,000-seat page are
//! printed, not asserted.

mod buyer;
mod organizer;
mod scanner;
mod session;
mod support;
mod waiting_room;
