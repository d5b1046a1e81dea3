//! The only way anything reaches a page. Markup is a `&'static str` (this
//! crate's literals) or an [`Html`] (made here, from the same parts);
//! everything else goes in as a value of [`Render`]: [`Text`], which is
//! escaped on the way, numbers, or another [`Html`]. Provider text (a
//! label, a function name) is a `String` or a borrowed `&str`, never
//! `'static`: written as markup, or as a `put!` argument without `Text`, it
//! does not compile. A `put!` template that names a variable (`{label}`,
//! which `format_args!` would capture unchecked) does not compile either.
//!
//! ```text
//! put!(out, "<h1>{}</h1>", Text(&report.session.label));  // escaped
//! put!(out, "<h1>{}</h1>", report.session.label);         // error: `String` is not `Render`
//! put!(out, "<h1>{label}</h1>");                           // error: names a variable
//! out.markup(&report.session.label);                       // error: not `'static`
//! ```

use std::fmt::{self, Write};

/// Where a page goes: a string, or a file written as the page is made (a
/// report of a million objects is not held twice). The first write error
/// is kept; later writes are skipped.
pub(crate) struct Out<'a> {
    sink: Sink<'a>,
}

enum Sink<'a> {
    Text(String),
    Io(&'a mut dyn std::io::Write, Option<std::io::Error>),
}

impl<'a> Out<'a> {
    /// A page made in memory.
    pub(crate) fn in_memory() -> Out<'static> {
        Out {
            sink: Sink::Text(String::with_capacity(1 << 16)),
        }
    }

    /// A page written to `w` as it is made (through no buffer of its own).
    pub(crate) fn to_writer(w: &'a mut dyn std::io::Write) -> Out<'a> {
        Out {
            sink: Sink::Io(w, None),
        }
    }

    /// What an in-memory page holds (empty for a writer's).
    pub(crate) fn into_string(self) -> String {
        match self.sink {
            Sink::Text(t) => t,
            Sink::Io(..) => String::new(),
        }
    }

    /// The first write error of a writer's page.
    pub(crate) fn into_result(self) -> std::io::Result<()> {
        match self.sink {
            Sink::Io(_, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }

    /// Markup: a literal of this crate.
    pub(crate) fn markup(&mut self, s: &'static str) {
        self.raw(s);
    }

    /// What `put!` makes: a literal template whose arguments are all
    /// wrapped in [`Safe`]. Not for direct use.
    #[doc(hidden)]
    pub(crate) fn put(&mut self, args: fmt::Arguments<'_>) {
        let _ = Raw(self).write_fmt(args);
    }

    fn raw(&mut self, s: &str) {
        match &mut self.sink {
            Sink::Text(t) => t.push_str(s),
            Sink::Io(w, err @ None) => {
                if let Err(e) = w.write_all(s.as_bytes()) {
                    *err = Some(e);
                }
            }
            Sink::Io(_, Some(_)) => {}
        }
    }
}

/// `fmt::Write` into an [`Out`], for this module alone.
struct Raw<'o, 'a>(&'o mut Out<'a>);

impl Write for Raw<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.raw(s);
        Ok(())
    }
}

/// What may go into a page through a `put!` argument.
pub(crate) trait Render {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

/// Text from a report: escaped on the way in.
pub(crate) struct Text<'a>(pub &'a str);

impl Render for Text<'_> {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::escape_into(f, self.0);
        Ok(())
    }
}

/// Markup made by this module (from literals, escaped text and numbers).
pub(crate) struct Html(String);

impl Html {
    /// The markup `make` writes.
    pub(crate) fn of(make: impl FnOnce(&mut Out<'_>)) -> Html {
        let mut out = Out {
            sink: Sink::Text(String::new()),
        };
        make(&mut out);
        Html(out.into_string())
    }
}

impl Render for Html {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// This crate's literals (class names, event and provider names).
impl Render for &'static str {
    fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

macro_rules! numbers {
    ($($t:ty),*) => {$(
        impl Render for $t {
            fn render(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    )*};
}
numbers!(u32, u64, usize, f64, char);

/// A [`Render`] value as `Display`, with the formatter's options (a
/// number's precision).
pub(crate) struct Safe<'a, T: Render + ?Sized>(pub &'a T);

impl<T: Render + ?Sized> fmt::Display for Safe<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.render(f)
    }
}

/// Whether a `put!` template uses positional arguments only: `{}` and
/// `{:spec}`, never `{name}`, which would capture a variable unchecked.
pub(crate) const fn positional_only(template: &str) -> bool {
    let b = template.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'{' {
            if i + 1 < b.len() && b[i + 1] == b'{' {
                i += 2;
                continue;
            }
            if i + 1 < b.len() && (b[i + 1].is_ascii_alphabetic() || b[i + 1] == b'_') {
                return false;
            }
        }
        i += 1;
    }
    true
}

/// Writes a literal template to an [`Out`], each argument a [`Render`]
/// value: `put!(out, "<td>{}</td>", Text(&o.label))`.
macro_rules! put {
    ($out:expr, $template:literal $(, $arg:expr)* $(,)?) => {{
        const _: () = assert!(
            $crate::html::out::positional_only($template),
            "put!: name no variable in the template; pass it as an argument"
        );
        $out.put(format_args!($template $(, $crate::html::out::Safe(&$arg))*))
    }};
}
pub(crate) use put;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_with_named_arguments_are_refused() {
        assert!(positional_only("<td>{}</td><td>{:.1}</td>{{literal}}"));
        assert!(!positional_only("<td>{label}</td>"));
        assert!(!positional_only("{_x}"));
        // A named argument right after an escaped brace; a brace at the end.
        assert!(!positional_only("abc{{{x}"));
        assert!(positional_only("a{"));
        assert!(positional_only("{"));
    }

    #[test]
    fn text_is_escaped_and_markup_is_not() {
        let html = Html::of(|out| {
            out.markup("<b>");
            put!(
                out,
                "<i title=\"{}\">{}</i>",
                Text("a\"b"),
                Text("<script>")
            );
            put!(out, "{:.1} {}{}", 2.25f64, 7u64, Text("&"));
        });
        assert_eq!(
            html.0,
            "<b><i title=\"a&quot;b\">&lt;script&gt;</i>2.2 7&amp;"
        );
    }
}
