//! A step counter for Lua patterns, so that `string.find`, `match`, `gmatch` and `gsub` cannot
//! run away inside C.
//!
//! Lua's matcher backtracks: `("a"):rep(40):find(".-.-.-.-.-.-b")` runs for hours inside one C
//! call, where the instruction-count hook never fires. Before the C function runs, the wrappers
//! installed by `vm::harden` walk the same backtracking search as Lua's `lstrlib.c` (written
//! here from the algorithm, counting one step per `match` and per single-character test) with a
//! step budget. A search that fits is then run by Lua itself, which does about the same work; one
//! that does not is refused with an error that says so, and the steps are charged to the call's
//! instruction budget either way.

/// Why the count stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// More steps than allowed, or past the deadline.
    Budget,
    /// Something Lua itself rejects (malformed pattern, too complex): Lua reports it.
    Lua,
}

const MAXCCALLS: u32 = 200;
/// Steps between two looks at the clock.
const CLOCK_EVERY: u64 = 1 << 16;
const MAXCAPTURES: usize = 32;
const CAP_UNFINISHED: isize = -1;
const CAP_POSITION: isize = -2;

struct Probe<'a> {
    s: &'a [u8],
    p: &'a [u8],
    steps: u64,
    limit: u64,
    /// The call's deadline, checked every `CLOCK_EVERY` steps.
    deadline: Option<std::time::Instant>,
    depth: u32,
    level: usize,
    capture: [(usize, isize); MAXCAPTURES],
}

type Step = Result<Option<usize>, Stop>;

impl Probe<'_> {
    fn tick(&mut self, n: u64) -> Result<(), Stop> {
        let before = self.steps;
        self.steps += n;
        if self.steps > self.limit {
            return Err(Stop::Budget);
        }
        if before / CLOCK_EVERY != self.steps / CLOCK_EVERY
            && self.deadline.is_some_and(|d| std::time::Instant::now() > d)
        {
            return Err(Stop::Budget);
        }
        Ok(())
    }

    fn class_end(&self, mut p: usize) -> Result<usize, Stop> {
        let c = *self.p.get(p).ok_or(Stop::Lua)?;
        p += 1;
        if c == b'%' {
            if p >= self.p.len() {
                return Err(Stop::Lua);
            }
            return Ok(p + 1);
        }
        if c == b'[' {
            if self.p.get(p) == Some(&b'^') {
                p += 1;
            }
            loop {
                // The first character of a set may be `]`.
                let c = *self.p.get(p).ok_or(Stop::Lua)?;
                p += 1;
                if c == b'%' {
                    p += 1;
                }
                if self.p.get(p) == Some(&b']') {
                    return Ok(p + 1);
                }
                if p >= self.p.len() {
                    return Err(Stop::Lua);
                }
            }
        }
        Ok(p)
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.s.get(s) else { return false };
        match self.p[p] {
            b'.' => true,
            b'%' => match_class(c, self.p[p + 1]),
            b'[' => self.match_bracket(c, p, ep - 1),
            pc => pc == c,
        }
    }

    fn match_bracket(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.p.get(p + 1) == Some(&b'^') {
            sig = false;
            p += 1;
        }
        p += 1;
        while p < ec {
            if self.p[p] == b'%' && p + 1 < ec {
                p += 1;
                if match_class(c, self.p[p]) {
                    return sig;
                }
                p += 1;
            } else if self.p.get(p + 1) == Some(&b'-') && p + 2 < ec {
                if self.p[p] <= c && c <= self.p[p + 2] {
                    return sig;
                }
                p += 3;
            } else {
                if self.p[p] == c {
                    return sig;
                }
                p += 1;
            }
        }
        !sig
    }

    fn do_match(&mut self, mut s: usize, mut p: usize) -> Step {
        self.depth += 1;
        if self.depth > MAXCCALLS {
            return Err(Stop::Lua);
        }
        let r = loop {
            self.tick(1)?;
            if p == self.p.len() {
                break Ok(Some(s));
            }
            match self.p[p] {
                b'(' => {
                    break if self.p.get(p + 1) == Some(&b')') {
                        self.start_capture(s, p + 2, CAP_POSITION)
                    } else {
                        self.start_capture(s, p + 1, CAP_UNFINISHED)
                    }
                }
                b')' => break self.end_capture(s, p + 1),
                b'$' if p + 1 == self.p.len() => break Ok((s == self.s.len()).then_some(s)),
                b'%' if self.p.get(p + 1) == Some(&b'b') => match self.match_balance(s, p + 2)? {
                    Some(e) => {
                        s = e;
                        p += 4;
                        continue;
                    }
                    None => break Ok(None),
                },
                b'%' if self.p.get(p + 1) == Some(&b'f') => {
                    p += 2;
                    if self.p.get(p) != Some(&b'[') {
                        break Err(Stop::Lua);
                    }
                    let ep = self.class_end(p)?;
                    let prev = if s == 0 { 0 } else { self.s[s - 1] };
                    let cur = self.s.get(s).copied().unwrap_or(0);
                    if !self.match_bracket(prev, p, ep - 1) && self.match_bracket(cur, p, ep - 1) {
                        p = ep;
                        continue;
                    }
                    break Ok(None);
                }
                b'%' if self.p.get(p + 1).is_some_and(u8::is_ascii_digit) => {
                    match self.match_capture(s, self.p[p + 1])? {
                        Some(e) => {
                            s = e;
                            p += 2;
                            continue;
                        }
                        None => break Ok(None),
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let m = self.single_match(s, p, ep);
                    match self.p.get(ep) {
                        Some(b'?') => {
                            if m {
                                if let Some(e) = self.do_match(s + 1, ep + 1)? {
                                    break Ok(Some(e));
                                }
                            }
                            p = ep + 1;
                            continue;
                        }
                        Some(b'+') => break if m { self.max_expand(s + 1, p, ep) } else { Ok(None) },
                        Some(b'*') => break self.max_expand(s, p, ep),
                        Some(b'-') => break self.min_expand(s, p, ep),
                        _ => {
                            if !m {
                                break Ok(None);
                            }
                            s += 1;
                            p = ep;
                            continue;
                        }
                    }
                }
            }
        };
        self.depth -= 1;
        r
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Step {
        let mut i = 0;
        while self.single_match(s + i, p, ep) {
            self.tick(1)?;
            i += 1;
        }
        loop {
            if let Some(e) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(e));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Step {
        loop {
            if let Some(e) = self.do_match(s, ep + 1)? {
                return Ok(Some(e));
            }
            if self.single_match(s, p, ep) {
                s += 1;
            } else {
                return Ok(None);
            }
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: isize) -> Step {
        if self.level >= MAXCAPTURES {
            return Err(Stop::Lua);
        }
        self.capture[self.level] = (s, what);
        self.level += 1;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.level -= 1;
        }
        Ok(r)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Step {
        let l = (0..self.level).rev().find(|&l| self.capture[l].1 == CAP_UNFINISHED).ok_or(Stop::Lua)?;
        self.capture[l].1 = (s - self.capture[l].0) as isize;
        let r = self.do_match(s, p)?;
        if r.is_none() {
            self.capture[l].1 = CAP_UNFINISHED;
        }
        Ok(r)
    }

    fn match_balance(&mut self, s: usize, p: usize) -> Step {
        let (Some(&b), Some(&e)) = (self.p.get(p), self.p.get(p + 1)) else { return Err(Stop::Lua) };
        if self.s.get(s) != Some(&b) {
            return Ok(None);
        }
        let mut cont = 1;
        let mut i = s + 1;
        while i < self.s.len() {
            self.tick(1)?;
            let c = self.s[i];
            if c == e {
                cont -= 1;
                if cont == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == b {
                cont += 1;
            }
            i += 1;
        }
        Ok(None)
    }

    fn match_capture(&mut self, s: usize, digit: u8) -> Step {
        let l = (digit - b'1') as usize;
        if digit == b'0' || l >= self.level || self.capture[l].1 == CAP_UNFINISHED {
            return Err(Stop::Lua);
        }
        let (start, len) = self.capture[l];
        let len = len.max(0) as usize;
        self.tick(len as u64)?;
        Ok((self.s.len() - s >= len && self.s[start..start + len] == self.s[s..s + len]).then_some(s + len))
    }
}

fn match_class(c: u8, cl: u8) -> bool {
    let r = match cl.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        b's' => c.is_ascii_whitespace() || c == 0x0b,
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return cl == c,
    };
    if cl.is_ascii_uppercase() {
        !r
    } else {
        r
    }
}

/// Where a search starts, as Lua computes it from `init` (1-based, negative from the end);
/// None when it starts past the end (nothing is searched).
pub fn start(len: usize, init: Option<i64>) -> Option<usize> {
    let init = init.unwrap_or(1);
    let pos = if init > 0 {
        init as usize - 1
    } else if init == 0 || init.unsigned_abs() as usize > len {
        0
    } else {
        len - init.unsigned_abs() as usize
    };
    (pos <= len).then_some(pos)
}

/// Which string function is searching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `find`, `match`: the first match from the start position (`^` anchors).
    First,
    /// `gsub` with at most `max` replacements (`^` anchors).
    Gsub { max: Option<u64> },
    /// A whole `gmatch` iteration (`^` is not an anchor there).
    Gmatch,
}

/// The steps Lua's matcher takes for `mode` of `pattern` over `subject` from `from`, counted up
/// to `limit`, or until `deadline`.
pub fn steps(
    subject: &[u8],
    pattern: &[u8],
    from: usize,
    mode: Mode,
    limit: u64,
    deadline: Option<std::time::Instant>,
) -> Result<u64, Stop> {
    let anchor = mode != Mode::Gmatch && pattern.first() == Some(&b'^');
    let p0 = usize::from(anchor);
    let mut probe =
        Probe { s: subject, p: pattern, steps: 0, limit, deadline, depth: 0, level: 0, capture: [(0, 0); MAXCAPTURES] };
    let (mut s, mut matches, mut last) = (from, 0u64, None);
    loop {
        probe.level = 0;
        probe.depth = 0;
        probe.tick(1)?;
        match probe.do_match(s, p0)? {
            Some(_) if mode == Mode::First => break,
            Some(e) if Some(e) != last => {
                matches += 1;
                if matches_done(mode, matches) {
                    break;
                }
                s = e;
                last = Some(e);
            }
            _ if s < subject.len() => s += 1,
            _ => break,
        }
        if anchor {
            break;
        }
    }
    Ok(probe.steps)
}

fn matches_done(mode: Mode, n: u64) -> bool {
    matches!(mode, Mode::Gsub { max: Some(m) } if n >= m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_patterns_are_cheap_and_backtracking_is_caught() {
        let line = b"Slave_IO_Running: Yes";
        assert!(steps(line, b"^(%S+):%s+(%S+)", 0, Mode::First, 10_000, None).unwrap() < 200);
        let body = [b"{\"status\":\"ok\"}".as_slice(), &[b' '; 100_000]].concat();
        assert!(steps(&body, b"\"status\":\"(%w+)\"", 0, Mode::First, 10_000_000, None).is_ok());
        let a = vec![b'a'; 40];
        assert_eq!(steps(&a, b".-.-.-.-.-.-b", 0, Mode::First, 10_000_000, None), Err(Stop::Budget));
        assert_eq!(steps(&a, b"a*a*a*a*a*a*a*b", 0, Mode::First, 10_000_000, None), Err(Stop::Budget));
        assert!(steps(&a, b"%b()", 0, Mode::Gmatch, 10_000, None).is_ok());
        assert_eq!(steps(b"x", b"[a", 0, Mode::First, 1000, None), Err(Stop::Lua));
        assert_eq!(steps(b"x", b"%", 0, Mode::First, 1000, None), Err(Stop::Lua));
        // gsub over every position stops at the budget too.
        let spaces = vec![b' '; 20_000];
        assert_eq!(steps(&spaces, b"%s*x", 0, Mode::Gsub { max: None }, 1_000_000, None), Err(Stop::Budget));
    }

    #[test]
    fn start_positions() {
        assert_eq!(start(5, None), Some(0));
        assert_eq!(start(5, Some(6)), Some(5));
        assert_eq!(start(5, Some(7)), None);
        assert_eq!(start(5, Some(-2)), Some(3));
        assert_eq!(start(5, Some(-9)), Some(0));
    }
}
