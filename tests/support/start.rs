//! Starting the tests' programs. Under Wine, `CreateProcess` now and then
//! fails with ERROR_INTERNAL_ERROR (1359) when a test binary starts many
//! processes (1 run of the CLI tests in 6 here, before they tried again):
//! no process ran, so the start is tried again, a few times. Elsewhere a
//! failed start is returned as it is. Shared by the test programs.
use std::io;
use std::process::Command;
use std::time::Duration;

/// Wine's `CreateProcess` failure that a second try gets past.
const INTERNAL_ERROR: i32 = 1359;

/// Starting a command, tried again (up to five more times) while the start
/// fails with [`INTERNAL_ERROR`] on Windows.
pub trait Start {
    /// `how` (`Command::output`, `Command::spawn`) of this command.
    fn retried<T>(&mut self, how: impl FnMut(&mut Command) -> io::Result<T>) -> io::Result<T>;
}

impl Start for Command {
    fn retried<T>(&mut self, mut how: impl FnMut(&mut Command) -> io::Result<T>) -> io::Result<T> {
        let mut tries = 0;
        loop {
            match how(self) {
                Err(e)
                    if cfg!(windows) && e.raw_os_error() == Some(INTERNAL_ERROR) && tries < 5 =>
                {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
                result => return result,
            }
        }
    }
}
