//! `mapileak`: the command-line side of mapileak. The `gate`, `render` and
//! `diff` commands land with their issues; until then it says so and exits 2.

use std::process::ExitCode;

const USAGE: &str = "usage: mapileak gate [--baseline FILE] [--suppressions FILE] [--format text|json|junit|github] PATH...
       mapileak render REPORT.json -o OUT.html
       mapileak diff OLD NEW";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("mapileak {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(cmd @ ("gate" | "render" | "diff")) => {
            eprintln!("mapileak: `{cmd}` is not implemented in this version");
            ExitCode::from(2)
        }
        Some(other) => {
            eprintln!("mapileak: unknown command `{other}`\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
