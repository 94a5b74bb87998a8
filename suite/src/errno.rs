//! Errno values as the suite records them: the raw number, printed and parsed by name
//! (`EINVAL`), so sequences, reports and reproducers read like kernel code.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use nix::errno::Errno as NixErrno;

/// A raw errno with its symbolic name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const ENOMEM: Errno = Errno(libc::ENOMEM);
    pub const EACCES: Errno = Errno(libc::EACCES);
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    pub const EBUSY: Errno = Errno(libc::EBUSY);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const ESPIPE: Errno = Errno(libc::ESPIPE);
    pub const E2BIG: Errno = Errno(libc::E2BIG);
    pub const ENOMSG: Errno = Errno(libc::ENOMSG);
    pub const EOVERFLOW: Errno = Errno(libc::EOVERFLOW);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);

    /// The symbolic name (`EINVAL`), or `errno N` for numbers Linux does not name.
    pub fn name(self) -> String {
        let n = NixErrno::from_raw(self.0);
        if n == NixErrno::UnknownErrno { format!("errno {}", self.0) } else { format!("{n:?}") }
    }

    /// The C library's description.
    pub fn desc(self) -> &'static str {
        NixErrno::from_raw(self.0).desc()
    }

    /// Parses `EINVAL`, `einval` or a number.
    pub fn parse(text: &str) -> Option<Errno> {
        let t = text.trim();
        if let Ok(n) = t.parse::<i32>() {
            return Some(Errno(n));
        }
        let upper = t.to_ascii_uppercase();
        (1..4096).map(Errno).find(|e| e.name() == upper)
    }

    /// The errno of an I/O error (EIO when it carries none).
    pub fn from_io(e: &std::io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }

    /// The errno of the last failed libc call.
    pub fn last() -> Errno {
        Errno(NixErrno::last_raw())
    }
}

impl From<NixErrno> for Errno {
    fn from(e: NixErrno) -> Self {
        Errno(e as i32)
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Errno {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Errno {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Errno;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an errno name such as EINVAL, or its number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Errno, E> {
                Errno::parse(v).ok_or_else(|| E::custom(format!("unknown errno name `{v}`")))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Errno, E> {
                i32::try_from(v).map(Errno).map_err(|_| E::custom("errno out of range"))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Errno, E> {
                i32::try_from(v).map(Errno).map_err(|_| E::custom("errno out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'a> arbitrary::Arbitrary<'a> for Errno {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Errno(u.int_in_range(1..=133)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse() {
        for e in [Errno::EINVAL, Errno::ENOMSG, Errno::ENOTTY, Errno::ESPIPE, Errno::EOPNOTSUPP] {
            assert_eq!(Errno::parse(&e.name()), Some(e));
        }
        assert_eq!(Errno::parse("einval"), Some(Errno::EINVAL));
        assert_eq!(Errno::parse("EBOGUS"), None);
    }

    #[test]
    fn unknown_numbers_print_as_numbers() {
        assert_eq!(Errno(4000).name(), "errno 4000");
    }
}
